# The retailflow image the Helm chart runs: the static binary as entrypoint, non-root (uid 65532),
# nothing else in the image. Build: docker build -t retailflow:$(git describe --always) .
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/retailflow ./cmd/retailflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/retailflow /usr/local/bin/retailflow
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/retailflow"]
