# syntax=docker/dockerfile:1
# sas-gateway for Fly.io: a static binary on a distroless, non-root image.
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t sas-gateway .

# Base images pinned by digest, so a rebuild of the same commit uses the same
# bytes (a tag moves on every upstream release). The tag stays for people.
# To update: docker buildx imagetools inspect <image>:<tag> (or crane digest),
# then replace the digest and run scripts/test (deploy_test checks the form).
FROM golang:1.26-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/signals-sorcery/sas/shared/buildinfo.Version=${VERSION}" -o /out/sas-gateway ./gateway/cmd/sas-gateway

FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
COPY --from=build /out/sas-gateway /sas-gateway
USER nonroot:nonroot
EXPOSE 8080 9091
# No ENTRYPOINT: fly.toml's release_command replaces this CMD with
# "/sas-gateway migrate", and a bare CMD makes that unambiguous.
CMD ["/sas-gateway", "serve"]
