# The Makefile is the contract: make (build), make test, make bench, make package, make clean.
# Every bundled program's version is pinned in embed/tools/go.mod (node helpers) or embed/obs/go.mod
# (VictoriaMetrics, VictoriaLogs); Kubernetes' in go.mod.

SHELL := /bin/bash
GO ?= go
K8S_VERSION := $(shell awk '$$1=="k8s.io/kubernetes"{print $$2; exit}' go.mod)
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
GLUEBOX_VERSION ?= $(shell git describe --tags 2>/dev/null || echo 0.1.0-dev.$$(git rev-parse --short HEAD 2>/dev/null || echo local))
BUILD_DATE := $(shell date -u +%Y-%m-%dT%H:%M:%SZ)

KVER_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
LDFLAGS := -s -w -X github.com/gluebox/gluebox/appliance/version.Version=$(GLUEBOX_VERSION)
LDFLAGS += $(foreach p,$(KVER_PKGS),-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(K8S_MINOR) -X $(p).gitTreeState=clean -X $(p).buildDate=$(BUILD_DATE))

TOOLS_DIR := embed/tools
BUILD_DIR := embed/.build
BUNDLE := embed/bundle/bundle.tar.zst
OBS_DIR := embed/obs
BUILDKIT_DIR := embed/buildkit
TOOL_SRCS := $(TOOLS_DIR)/go.mod $(TOOLS_DIR)/go.sum $(OBS_DIR)/go.mod $(OBS_DIR)/go.sum $(wildcard $(TOOLS_DIR)/*/*.go) $(wildcard embed/mkbundle/*.go) $(wildcard appliance/ociimage/*.go)
TOOL_SRCS += $(BUILDKIT_DIR)/go.mod $(BUILDKIT_DIR)/go.sum $(wildcard $(BUILDKIT_DIR)/cmd/*/*.go)
TOOL_SRCS += Makefile # the programs' version stamps (-ldflags -X) are set here
tool_version = $(shell awk '$$1=="$(1)"{print $$2; exit}' $(or $(2),$(TOOLS_DIR))/go.mod)

.PHONY: all build bundle deps test test-unit test-e2e bench package clean

all: build

# deps installs what building and testing need on a fresh Debian machine.
deps:
	@bash .ci/deps

build: bin/gluebox

bundle: $(BUNDLE)

$(BUNDLE): $(TOOL_SRCS)
	@mkdir -p $(BUILD_DIR)/bin
	cd $(TOOLS_DIR) && CGO_ENABLED=0 $(GO) build -ldflags '-s -w -X github.com/containerd/containerd/v2/version.Version=$(call tool_version,github.com/containerd/containerd/v2)' \
		-tags 'no_btrfs no_devmapper no_zfs' -o ../.build/bin/ \
		github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
		github.com/containerd/containerd/v2/cmd/ctr
	cd $(TOOLS_DIR) && CGO_ENABLED=1 $(GO) build -tags 'seccomp netgo osusergo' \
		-ldflags '-s -w -extldflags -static -X main.version=$(patsubst v%,%,$(call tool_version,github.com/opencontainers/runc))' \
		-o ../.build/bin/runc github.com/opencontainers/runc
	cd $(TOOLS_DIR) && CGO_ENABLED=0 $(GO) build -ldflags '-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$(call tool_version,github.com/containernetworking/plugins)' -o ../.build/bin/ \
		github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/main/loopback \
		github.com/containernetworking/plugins/plugins/ipam/host-local \
		github.com/containernetworking/plugins/plugins/meta/portmap \
		./coredns ./pause
	cd $(OBS_DIR) && CGO_ENABLED=0 $(GO) build -o ../.build/bin/ \
		-ldflags '-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-metrics-$(call tool_version,github.com/VictoriaMetrics/VictoriaMetrics,$(OBS_DIR))' \
		github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics \
		github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert
	cd $(OBS_DIR) && CGO_ENABLED=0 $(GO) build -o ../.build/bin/ \
		-ldflags '-s -w -X github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=victoria-logs-$(call tool_version,github.com/VictoriaMetrics/VictoriaLogs,$(OBS_DIR))' \
		github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs \
		github.com/VictoriaMetrics/VictoriaLogs/app/vlagent
# Alertmanager's module lacks its generated web UI (ui/app/dist, needed by go:embed): build a copy
# with a stub page, on the dependencies of its own go.sum. gluebox talks to its API only.
	rm -rf $(BUILD_DIR)/alertmanager && cp -r "$$(cd $(OBS_DIR) && $(GO) mod download github.com/prometheus/alertmanager && $(GO) list -m -f '{{.Dir}}' github.com/prometheus/alertmanager)" $(BUILD_DIR)/alertmanager && chmod -R u+w $(BUILD_DIR)/alertmanager
	cd $(BUILD_DIR)/alertmanager/ui/app && for d in elm mantine; do mkdir -p dist/$$d && echo '<!doctype html><title>Alertmanager</title><p>Not bundled: use gluebox alerts.' > dist/$$d/index.html; done
	cd $(BUILD_DIR)/alertmanager && CGO_ENABLED=0 $(GO) build -o ../bin/ \
		-ldflags '-s -w -X github.com/prometheus/common/version.Version=$(patsubst v%,%,$(call tool_version,github.com/prometheus/alertmanager,$(OBS_DIR)))' \
		./cmd/alertmanager
	cd $(BUILDKIT_DIR) && CGO_ENABLED=0 $(GO) build -trimpath -tags 'osusergo netgo' \
		-ldflags '-s -w -X github.com/moby/buildkit/version.Version=$(call tool_version,github.com/moby/buildkit,$(BUILDKIT_DIR))' \
		-o ../.build/bin/ github.com/moby/buildkit/cmd/buildkitd ./cmd/buildkit-client
	$(GO) run ./embed/mkbundle -in $(BUILD_DIR)/bin -out embed/bundle -gomod $(TOOLS_DIR)/go.mod -gomod $(OBS_DIR)/go.mod -gomod $(BUILDKIT_DIR)/go.mod

GO_SRCS := $(shell find cmd appliance assets embed -name '*.go' -not -path 'embed/tools/*' 2>/dev/null) go.mod go.sum
PAYLOAD := embed/launcher/payload/gluebox.tar.zst

# bin/gluebox-core is the whole program; bin/gluebox, the shipped binary, carries it compressed.
bin/gluebox-core: $(BUNDLE) $(GO_SRCS)
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/gluebox-core ./cmd/gluebox-core

$(PAYLOAD): bin/gluebox-core embed/mkbundle/main.go
	$(GO) run ./embed/mkbundle -program bin/gluebox-core -out embed/launcher/payload

bin/gluebox: $(PAYLOAD) cmd/gluebox/main.go embed/launcher/launcher.go
	$(GO) build -ldflags '-s -w' -o bin/gluebox ./cmd/gluebox
	@ls -la bin/gluebox bin/gluebox-core

# test vets the code, runs staticcheck (pinned as a tool in go.mod), then every test, the
# end-to-end tests that boot a real node included (they need root), and the GitOps engine again
# under the race detector. With GLUEBOX_REQUIRE_REAL=1 (as .ci/run sets) a test that lacks
# something real (root, cgroup controllers, a bundled program) fails instead of skipping.
test: build
	$(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) test -count=1 -timeout 60m ./...
	$(GO) test -race -short -count=1 ./appliance/gitops/engine/...

test-unit: bundle
	$(GO) test -count=1 -short ./...

# bench prints the performance figures; BENCH_ARGS="-only registry" (or node, gitops, builds, metrics, logs, secrets) runs one group.
bench: build
	$(GO) run ./bench -gluebox bin/gluebox $(BENCH_ARGS)

NFPM := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.40.0

package: build
	@mkdir -p dist
	GLUEBOX_VERSION=$(patsubst v%,%,$(GLUEBOX_VERSION)) \
		$(GO) run $(NFPM) package --config packaging/nfpm.yaml --packager deb --target dist/
	@ls -la dist/

clean:
	rm -rf bin dist $(BUILD_DIR) embed/bundle/bundle.tar.zst embed/bundle/bundle.sha256 embed/bundle/VERSIONS embed/launcher/payload
