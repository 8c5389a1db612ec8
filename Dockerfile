# syntax=docker/dockerfile:1
# Builds the autodeploy controller image: `make docker-build IMG=...`. Without Docker,
# `make image` builds the same image (internal/imagebuild; a test holds the two together).

FROM golang:1.26 AS builder
ARG TARGETOS
ARG TARGETARCH
WORKDIR /workspace

# Download the modules in their own layer, so that it is rebuilt only when go.mod or go.sum
# change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download

# The sources the manager is built from.
COPY api/ api/
COPY cmd/ cmd/
COPY controllers/ controllers/
COPY internal/ internal/

# A static binary for the target platform (TARGETOS/TARGETARCH are set by buildx; a plain
# `docker build` builds for linux and the builder's architecture).
RUN CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags="-s -w" -o manager ./cmd/manager

# distroless/static: no shell, no package manager, CA certificates; runs as the nonroot user.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED
LABEL org.opencontainers.image.source="https://github.com/autodeploy-dev/autodeploy" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}"
WORKDIR /
COPY --from=builder /workspace/manager /manager
USER 65532:65532

ENTRYPOINT ["/manager"]
