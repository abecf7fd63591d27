# One image for every Tandem component; the Deployment or DaemonSet picks the
# subcommand (tandem controller | node | dataplane | webhook | migrator | share-manager).
# Node 22: a maintained LTS line (the code is tested on Node >= 20).

# The data plane's native helper (lseek SEEK_DATA/SEEK_HOLE, fallocate PUNCH_HOLE),
# standard library only, static, so it runs in the Node image without Go.
FROM golang:1.26-bookworm AS fsutil
WORKDIR /src
COPY driver/native/fsutil ./
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=readonly
RUN go build -trimpath -ldflags="-s -w" -o /out/tandem-fsutil .

FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# npm ci: exactly the locked versions; the lock lists every platform's
# optional packages, so it installs the same on any build host.
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib ./lib
COPY cli ./cli
COPY driver ./driver
COPY webhook ./webhook
COPY migrator ./migrator
COPY lab ./lab
RUN npx tsc -p tsconfig.build.json \
 && npm prune --omit=dev

FROM node:22-bookworm-slim
# The node-side tools the components call: nbd-client (kernel NBD), nbdfuse and
# fuse3 (where the kernel has no NBD), mkfs/fsck for ext4 and xfs, mount and
# losetup (util-linux), NFS-Ganesha with its VFS backend for the share manager
# (which lists filesystems through setmntent(/etc/mtab): the link images lack),
# and dbus-daemon and dbus-send for the share manager's private bus, where
# Ganesha publishes its statistics.
# Versions come from the pinned Debian release; pinning each package would
# block its security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates nbd-client nbdfuse fuse3 e2fsprogs xfsprogs util-linux \
      nfs-ganesha nfs-ganesha-vfs dbus-daemon dbus-bin iproute2 \
 && rm -rf /var/lib/apt/lists/* \
 && ln -sf /proc/self/mounts /etc/mtab
WORKDIR /opt/tandem
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY manifests ./manifests
# Read at run time by @grpc/proto-loader (tsc does not compile it into dist/).
COPY driver/csi/csi.proto ./driver/csi/csi.proto
COPY --from=fsutil /out/tandem-fsutil /usr/local/bin/tandem-fsutil
ENV NODE_ENV=production
# Non-root by default (uid 1000 is the base image's "node" user; numeric so that
# runAsNonRoot can verify it): controller, webhook and migrator need no privileges.
# The node plugin, data plane and share manager mount, attach devices and run
# NFS-Ganesha, so their DaemonSet/Pod specs set runAsUser: 0 and privileged.
USER 1000:1000
ENTRYPOINT ["node", "/opt/tandem/dist/cli/main.js"]
CMD ["--help"]
