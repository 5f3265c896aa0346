/*
 * cepoll: a minimal single-threaded epoll echo server, the C baseline that
 * bench/compare.sh measures echod against. Level-triggered; one shared read
 * buffer; the unsent tail of a write that met a full socket is kept per
 * connection and reading pauses until it drains (so it has backpressure and
 * exact half-close, like echod). Not hardened: a benchmark peer only.
 *
 * usage: cepoll -listen IPV4:PORT   (port 0 picks one; prints
 * "msg=listening proto=tcp addr=IPV4:PORT" on stderr once ready)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSIZE 65536

struct conn {
	char *tail;   /* unsent echo, or NULL */
	int off, len; /* unsent bytes are tail[off:len] */
};

static struct conn *conns;
static int nconns;

static void closeconn(int fd) {
	free(conns[fd].tail);
	conns[fd].tail = NULL;
	close(fd);
}

/* echo writes p back to fd; what does not fit is kept and fd waits for
 * writability. Returns -1 if fd was closed. */
static int echo(int ep, int fd, const char *p, int n) {
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w > 0) {
			p += w;
			n -= w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno != EAGAIN) {
			closeconn(fd);
			return -1;
		}
		break;
	}
	if (n > 0) {
		struct conn *c = &conns[fd];
		c->tail = malloc(n);
		if (!c->tail) {
			closeconn(fd);
			return -1;
		}
		memcpy(c->tail, p, n);
		c->off = 0;
		c->len = n;
		struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
		epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
	}
	return 0;
}

static void flush(int ep, int fd) {
	struct conn *c = &conns[fd];
	while (c->off < c->len) {
		ssize_t w = write(fd, c->tail + c->off, c->len - c->off);
		if (w > 0) {
			c->off += w;
			continue;
		}
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN)
			return;
		closeconn(fd);
		return;
	}
	free(c->tail);
	c->tail = NULL;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
	epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

int main(int argc, char **argv) {
	char host[64];
	int port;
	if (argc != 3 || strcmp(argv[1], "-listen") != 0 ||
	    sscanf(argv[2], "%63[^:]:%d", host, &port) != 2) {
		fprintf(stderr, "usage: cepoll -listen IPV4:PORT\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	nconns = 1 << 20;
	conns = calloc(nconns, sizeof *conns);

	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "cepoll: bad address %s\n", host);
		return 2;
	}
	if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
		perror("cepoll: listen");
		return 1;
	}
	socklen_t salen = sizeof sa;
	getsockname(ls, (struct sockaddr *)&sa, &salen);
	fprintf(stderr, "msg=listening proto=tcp addr=%s:%d\n", host, ntohs(sa.sin_port));

	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	static char buf[BUFSIZE];
	struct epoll_event events[256];
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			if (fd == ls) {
				for (;;) {
					int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
					if (c < 0)
						break;
					if (c >= nconns) {
						close(c);
						continue;
					}
					struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
				}
				continue;
			}
			if (conns[fd].tail) {
				flush(ep, fd);
				continue;
			}
			ssize_t r = read(fd, buf, sizeof buf);
			if (r > 0)
				echo(ep, fd, buf, r);
			else if (r == 0 || (errno != EAGAIN && errno != EINTR))
				closeconn(fd);
		}
	}
}
