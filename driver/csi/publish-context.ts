/**
 * The publish_context ControllerPublishVolume hands NodeStageVolume for a volume served over NFS
 * (CSI leaves its keys to the driver): the share manager's Service address and the class's mount
 * options. Block volumes get an empty one.
 */
export const NFS_SERVER_KEY = 'nfsServer';
export const NFS_OPTIONS_KEY = 'nfsOptions';
