import { CSI_DRIVER_NAME } from '../../lib/api/volume.js';
import { parseStorageClassParameters } from '../../lib/params/storage-class.js';
import { type AdmissionRequest, allow, invalid, isRecord, type Verdict } from '../admission.js';

/** The only topology key the driver reports (NodeGetInfo); terms on any other key never match. */
export const TOPOLOGY_KEY = 'topology.csi.tandem.dev/node';

/**
 * A StorageClass for csi.tandem.dev: every parameter is checked (unknown keys
 * too) and allowedTopologies may only use the key the driver reports. Every
 * problem is listed at once, so one round trip fixes the class.
 */
export function validateStorageClass(request: AdmissionRequest): Verdict {
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return allow();
  const object = request.object;
  if (!isRecord(object)) return invalid('the object is not a StorageClass');
  if (object.provisioner !== CSI_DRIVER_NAME) return allow();
  const name =
    isRecord(object.metadata) && typeof object.metadata.name === 'string'
      ? object.metadata.name
      : 'StorageClass';

  const errors: string[] = [];
  const parameters = object.parameters ?? {};
  if (!isRecord(parameters) || !Object.values(parameters).every((v) => typeof v === 'string')) {
    errors.push(
      'parameters must map names to strings (quote numbers and booleans in YAML, e.g. numberOfReplicas: "3")',
    );
  } else {
    const parsed = parseStorageClassParameters(parameters as Record<string, string>);
    if (!parsed.ok) errors.push(...parsed.errors);
  }
  errors.push(...topologyErrors(object.allowedTopologies));
  if (errors.length === 0) return allow();
  return invalid(`StorageClass ${name} is not valid for ${CSI_DRIVER_NAME}: ${errors.join('; ')}`);
}

function topologyErrors(allowedTopologies: unknown): string[] {
  if (allowedTopologies === undefined || allowedTopologies === null) return [];
  if (!Array.isArray(allowedTopologies)) return ['allowedTopologies must be a list'];
  const errors: string[] = [];
  allowedTopologies.forEach((term, i) => {
    const expressions = isRecord(term) ? term.matchLabelExpressions : undefined;
    if (!Array.isArray(expressions) || expressions.length === 0) {
      errors.push(`allowedTopologies[${i}] needs matchLabelExpressions`);
      return;
    }
    expressions.forEach((expression, j) => {
      const where = `allowedTopologies[${i}].matchLabelExpressions[${j}]`;
      if (!isRecord(expression)) {
        errors.push(`${where} must be an object with key and values`);
        return;
      }
      if (expression.key !== TOPOLOGY_KEY) {
        errors.push(
          `${where}.key is ${JSON.stringify(expression.key)}, but Tandem nodes report only ${TOPOLOGY_KEY}; a term on another key never matches, so no volume could be placed`,
        );
      }
      const values = expression.values;
      if (
        !Array.isArray(values) ||
        values.length === 0 ||
        !values.every((v) => typeof v === 'string' && v !== '')
      ) {
        errors.push(`${where}.values must list one or more node names`);
      }
    });
  });
  return errors;
}
