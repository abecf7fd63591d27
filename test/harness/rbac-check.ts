/**
 * What RBAC objects from the manifests grant a ServiceAccount: `can(account, verb, group,
 * resource, namespace?)` follows RoleBindings (in the namespace) and ClusterRoleBindings to their
 * rules, counting only rules not narrowed by resourceNames. For cli/manifests.test.ts.
 */
import type {
  KubernetesObject,
  V1ClusterRole,
  V1ClusterRoleBinding,
  V1Role,
  V1RoleBinding,
} from '@kubernetes/client-node';
import { named, ofKind } from './driver-manifests.js';

export class RbacCheck {
  readonly roles: V1Role[];
  readonly clusterRoles: V1ClusterRole[];
  readonly roleBindings: V1RoleBinding[];
  readonly clusterRoleBindings: V1ClusterRoleBinding[];
  /** Names of the ServiceAccounts the objects create. */
  readonly accounts: Set<string | undefined>;

  /** `objects`: the manifests; `namespace`: where the ServiceAccounts live. */
  constructor(
    objects: KubernetesObject[],
    readonly namespace: string,
  ) {
    this.roles = ofKind<V1Role>(objects, 'Role');
    this.clusterRoles = ofKind<V1ClusterRole>(objects, 'ClusterRole');
    this.roleBindings = ofKind<V1RoleBinding>(objects, 'RoleBinding');
    this.clusterRoleBindings = ofKind<V1ClusterRoleBinding>(objects, 'ClusterRoleBinding');
    this.accounts = new Set(ofKind<KubernetesObject>(objects, 'ServiceAccount').map((a) => a.metadata?.name));
  }

  /** Whether `subjects` include the ServiceAccount `account` of the namespace. */
  binds(subjects: V1RoleBinding['subjects'], account: string): boolean {
    return (subjects ?? []).some(
      (s) => s.kind === 'ServiceAccount' && s.name === account && s.namespace === this.namespace,
    );
  }

  /** Whether the ServiceAccount may do verb on group/resource (in namespace, or cluster-wide). */
  can(account: string, verb: string, group: string, resource: string, namespace?: string): boolean {
    const rules = [
      ...this.clusterRoleBindings
        .filter((b) => this.binds(b.subjects, account))
        .flatMap((b) => named(this.clusterRoles, b.roleRef.name).rules ?? []),
      ...(namespace === undefined
        ? []
        : this.roleBindings
            .filter((b) => b.metadata?.namespace === namespace && this.binds(b.subjects, account))
            .flatMap((b) =>
              b.roleRef.kind === 'ClusterRole'
                ? (named(this.clusterRoles, b.roleRef.name).rules ?? [])
                : (named(this.roles, b.roleRef.name).rules ?? []),
            )),
    ];
    return rules.some(
      (r) =>
        (r.apiGroups ?? []).includes(group) &&
        (r.resources ?? []).includes(resource) &&
        r.verbs.includes(verb) &&
        (r.resourceNames === undefined || r.resourceNames.length === 0),
    );
  }
}
