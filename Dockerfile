# echod container image: a static binary on an empty base, run as a non-root
# user. Build from the repository root:
#
#   docker build -t echod .
#   docker run --rm -p 7007:7007/tcp -p 7007:7007/udp -p 127.0.0.1:9090:9090 echod \
#       serve -listen :7007 -udp -admin :9090
#
# UDP echo is off unless -udp is given (it is a reflection vector), and the
# admin port (metrics, health) belongs on a private address only.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/echod ./cmd/echod

FROM scratch
COPY --from=build /out/echod /echod
# 65532 is the conventional "nonroot" user of minimal images; scratch has no
# /etc/passwd, so the numeric form is the one that works.
USER 65532:65532
EXPOSE 7007/tcp 7007/udp 9090/tcp
ENTRYPOINT ["/echod"]
CMD ["serve", "-listen", ":7007"]
