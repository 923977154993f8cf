# syntax=docker/dockerfile:1
# sas-gateway for Fly.io: a static binary on a distroless, non-root image.
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t sas-gateway .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X github.com/signals-sorcery/sas/shared/buildinfo.Version=${VERSION}" -o /out/sas-gateway ./gateway/cmd/sas-gateway

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sas-gateway /sas-gateway
USER nonroot:nonroot
EXPOSE 8080 9091
# No ENTRYPOINT: fly.toml's release_command replaces this CMD with
# "/sas-gateway migrate", and a bare CMD makes that unambiguous.
CMD ["/sas-gateway", "serve"]
