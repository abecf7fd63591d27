import { UsageError } from '../../lib/errors.js';

/**
 * The action of a component whose implementation has not landed yet. Its flags
 * are real and validated; running it says so and exits 2 instead of
 * pretending to serve.
 */
export function notYetAvailable(component: string, issue?: number): () => never {
  const tracked = issue === undefined ? '' : ` (tracked in issue ${issue})`;
  return () => {
    throw new UsageError(
      `the ${component} component is not in this build yet${tracked}; its configuration is valid`,
    );
  };
}
