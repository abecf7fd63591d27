// Prints one plain closing line ("tests: N passed, N failed, N skipped") that
// CI reads to count tests; jest's own summary is not in a format it knows.
export default class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const failedSuites = results.numFailedTestSuites - countSuitesWithFailedTests(results);
    const failed = results.numFailedTests + Math.max(0, failedSuites);
    const line = `tests: ${results.numPassedTests} passed, ${failed} failed, ${skipped} skipped`;
    // Written at exit so that it is the very last line, after jest's own summary.
    process.once('exit', () => process.stdout.write(`\n${line}\n`));
  }
}

// A suite that fails to load (syntax error, failing beforeAll) has no failed
// test of its own; count it as a failure so the line never reads "0 failed".
function countSuitesWithFailedTests(results) {
  return results.testResults.filter((suite) => suite.numFailingTests > 0).length;
}
