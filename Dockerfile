# meshmask image: meshmask-agent (the node daemon) and meshmask (the CLI).
# The BPF objects are embedded in the agent (bpftool skeletons), so the runtime stage needs
# only the shared libraries the two binaries load. tests/helm/dockerfile_test.sh runs this
# file's build-stage commands and checks its package lists.
#
# The BPF programs take their kernel types from the checked-in bpf/lib/vmlinux.h, so the build
# does not read the build machine's BTF; CO-RE relocates them at load on any kernel with BTF.

FROM debian:12 AS build
RUN apt-get update \
	&& apt-get install -y --no-install-recommends \
		build-essential pkg-config meson ninja-build \
		clang llvm bpftool libbpf-dev libelf-dev \
		zlib1g-dev libssl-dev libjansson-dev libmicrohttpd-dev libcurl4-openssl-dev \
		libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev libnghttp2-dev \
		libcurl4-openssl-dev libyaml-dev \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN meson setup build -Dtests=false -Dbpf=enabled --buildtype=release --prefix=/usr/local
RUN ninja -C build
RUN meson install -C build --destdir /out

FROM debian:12-slim
RUN apt-get update \
	&& apt-get install -y --no-install-recommends \
		libbpf1 libelf1 zlib1g libssl3 libjansson4 libmicrohttpd12 libprotobuf-c1 libnghttp2-14 libcurl4 libyaml-0-2 \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/usr/local/bin/meshmask-agent /out/usr/local/bin/meshmask /usr/local/bin/
# Non-root by default (the CLI needs no privilege). The agent needs capabilities, which
# Kubernetes grants only to uid 0: the Helm chart runs that container as root with every
# capability dropped except the ones it lists.
USER 65532:65532
EXPOSE 9477
ENTRYPOINT ["/usr/local/bin/meshmask-agent"]
