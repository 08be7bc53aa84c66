/*
 * floor-server: the floor of fork-per-request HTTP on this machine, for bench/run.ts.
 *
 * fnix answers a request by handing it to the agent of a warm container. Any server that runs a process
 * per request pays at least what this one pays: accept, parse, fork and exec the command, pipe the body
 * in and the output out, wait for it. It is C with nothing in the way, so that the benchmark measures
 * fnix against the physical floor of this machine rather than against an estimate. bench/run.ts runs it
 * on the host, and in a container confined exactly like fnix's (bench/host.ts), which shows what the
 * confinement itself costs.
 *
 * Three ways to start:
 *   floor-server --listen HOST:PORT -- COMMAND [ARG...]      bind, listen and serve
 *   floor-server --fd N -- COMMAND [ARG...]                  serve on a listening socket inherited as fd N
 *   floor-server --bind HOST:PORT --pass -- PROGRAM [ARG...] bind, listen, put the socket at fd 3, exec
 * The last two make the container case: the container has no network (--network none), so the host
 * binds the socket and `podman run --preserve-fds 1 ... floor-server --fd 3 -- COMMAND` hands it in.
 * HOST is a numeric address (127.0.0.1, or [::1]).
 *
 * Serving: the main process accepts; each connection gets a process of its own, which serves the
 * HTTP/1.1 requests on it one after another (keep-alive; pipelined bytes are kept for the next request).
 * Each request forks and execs COMMAND (execvp, the server's environment), the request body on its
 * stdin, its stdout the response body (200), its stderr the server's. A command that exits non-zero or
 * is killed gives 502 with no body. The body is read whole first (Content-Length only, up to 64 MiB;
 * chunked gives 501), then written to the command while its output is read, both polled, so that
 * neither a large body nor a large output can block the other side.
 *
 * Processes: the main process never waits for its connection processes (SA_NOCLDWAIT); a connection
 * process waits for each command it runs. Connection processes and commands die with their parent
 * (PR_SET_PDEATHSIG), so that killing the main process leaves nothing behind. SIGTERM and SIGINT end
 * the main process, which matters as PID 1 of a container, where a signal without a handler is ignored.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_HEAD (16u * 1024u)
#define MAX_BODY (64u * 1024u * 1024u)
#define MAX_OUTPUT (64u * 1024u * 1024u)
#define READ_CHUNK 65536
#define BACKLOG 1024
#define PASSED_FD 3

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

/* One parsed request head. */
typedef struct {
  size_t content_length;
  int minor;           /* HTTP/1.<minor> */
  int keep_alive;      /* the connection stays open after the response */
  int head_only;       /* HEAD: the response has no body */
  int expect_continue; /* Expect: 100-continue */
} request_t;

static char **command;
static pid_t main_pid;

static void die(const char *what) {
  fprintf(stderr, "floor-server: %s: %s\n", what, strerror(errno));
  _exit(111);
}

static void fail(const char *message, const char *detail) {
  fprintf(stderr, "floor-server: %s%s\n", message, detail);
  _exit(111);
}

static void usage(void) {
  fputs("usage: floor-server --listen HOST:PORT -- COMMAND [ARG...]\n"
        "       floor-server --fd N -- COMMAND [ARG...]\n"
        "       floor-server --bind HOST:PORT --pass -- PROGRAM [ARG...]\n",
        stderr);
  _exit(64);
}

/* Makes room for `extra` more bytes: at least doubling, so that appends stay linear. */
static void buf_reserve(buf_t *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap * 2;
  if (cap < b->len + extra) cap = b->len + extra;
  if (cap < READ_CHUNK) cap = READ_CHUNK;
  char *p = realloc(b->data, cap);
  if (!p) die("realloc");
  b->data = p;
  b->cap = cap;
}

/* Drops the first n bytes (a request served), keeping what follows (a pipelined one). */
static void buf_consume(buf_t *b, size_t n) {
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

/* Reads what the socket has into b; returns 0 at EOF or on an error (the connection is over). */
static int fill(int fd, buf_t *b) {
  if (b->len == b->cap) buf_reserve(b, READ_CHUNK);
  for (;;) {
    ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
    if (n > 0) {
      b->len += (size_t)n;
      return 1;
    }
    if (n < 0 && errno == EINTR) continue;
    return 0;
  }
}

/* Writes every byte of iov, across short writes; returns -1 when the peer is gone. */
static int write_all(int fd, struct iovec *iov, int count) {
  while (count > 0) {
    ssize_t n = writev(fd, iov, count);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    size_t left = (size_t)n;
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      iov++;
      count--;
    }
    if (count > 0) {
      iov->iov_base = (char *)iov->iov_base + left;
      iov->iov_len -= left;
    }
  }
  return 0;
}

static const char *reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 413: return "Content Too Large";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

/* Sends a whole response, head and body in one writev; returns -1 when the peer is gone. */
static int respond(int fd, int status, const char *body, size_t len, const request_t *r) {
  char head[256];
  int keep = r && r->keep_alive;
  int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\n%sContent-Length: %zu\r\n%s\r\n", status, reason(status),
                   status == 200 ? "Content-Type: application/octet-stream\r\n" : "", len,
                   !keep ? "Connection: close\r\n" : r->minor == 0 ? "Connection: keep-alive\r\n" : "");
  struct iovec iov[2] = {{.iov_base = head, .iov_len = (size_t)n}, {.iov_base = (void *)body, .iov_len = len}};
  return write_all(fd, iov, r && r->head_only ? 1 : 2);
}

/* Ends a connection without losing the last response: stop sending, and read and drop what the client
 * still sends for a moment, since closing with unread bytes would reset the connection. */
static void close_connection(int fd) {
  char sink[4096];
  struct pollfd p = {.fd = fd, .events = POLLIN};
  shutdown(fd, SHUT_WR);
  for (int i = 0; i < 256 && poll(&p, 1, 100) > 0; i++)
    if (read(fd, sink, sizeof sink) <= 0) break;
  close(fd);
}

static int is_space(char c) { return c == ' ' || c == '\t'; }

/* Whether [p, p+n) equals the NUL-terminated `word`, ignoring case. */
static int equals(const char *p, size_t n, const char *word) { return strlen(word) == n && strncasecmp(p, word, n) == 0; }

/* Whether the comma-separated list [p, p+n) holds `token`, ignoring case and whitespace. */
static int has_token(const char *p, size_t n, const char *token) {
  const char *end = p + n;
  while (p < end) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *stop = comma ? comma : end;
    const char *a = p, *b = stop;
    while (a < b && is_space(*a)) a++;
    while (b > a && is_space(b[-1])) b--;
    if (equals(a, (size_t)(b - a), token)) return 1;
    p = comma ? comma + 1 : end;
  }
  return 0;
}

/* Parses the head [p, p+len), which ends with the blank line. Returns 0, or the status to answer
 * before closing the connection. */
static int parse_head(const char *p, size_t len, request_t *r) {
  const char *end = p + len - 2; /* the blank line */
  const char *eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
  memset(r, 0, sizeof *r);

  /* METHOD SP TARGET SP HTTP/1.x */
  const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
  if (!sp1 || sp1 == p) return 400;
  const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
  if (!sp2 || sp2 == sp1 + 1) return 400;
  const char *version = sp2 + 1;
  if (eol - version != 8 || memcmp(version, "HTTP/", 5) != 0 || version[6] != '.' || version[5] < '0' || version[5] > '9' ||
      version[7] < '0' || version[7] > '9')
    return 400;
  if (version[5] != '1') return 505;
  r->minor = version[7] - '0';
  r->head_only = sp1 - p == 4 && memcmp(p, "HEAD", 4) == 0;

  int seen_length = 0, closing = 0, keep_alive = 0;
  for (const char *line = eol + 2; line < end; line = eol + 2) {
    eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
    if (is_space(*line)) return 400; /* obsolete line folding */
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (!colon || colon == line || is_space(colon[-1])) return 400;
    const char *value = colon + 1, *value_end = eol;
    while (value < value_end && is_space(*value)) value++;
    while (value_end > value && is_space(value_end[-1])) value_end--;
    size_t name_len = (size_t)(colon - line), value_len = (size_t)(value_end - value);

    if (equals(line, name_len, "content-length")) {
      if (value_len == 0) return 400;
      size_t n = 0;
      for (const char *d = value; d < value_end; d++) {
        if (*d < '0' || *d > '9') return 400;
        n = n * 10 + (size_t)(*d - '0');
        if (n > MAX_BODY) n = MAX_BODY + 1; /* saturates: too large is all that matters */
      }
      if (seen_length && n != r->content_length) return 400;
      seen_length = 1;
      r->content_length = n;
    } else if (equals(line, name_len, "transfer-encoding")) {
      return 501;
    } else if (equals(line, name_len, "connection")) {
      closing |= has_token(value, value_len, "close");
      keep_alive |= has_token(value, value_len, "keep-alive");
    } else if (equals(line, name_len, "expect")) {
      r->expect_continue = r->minor >= 1 && equals(value, value_len, "100-continue");
    }
  }
  r->keep_alive = !closing && (r->minor >= 1 || keep_alive);
  return 0;
}

/* Runs COMMAND with `body` on its stdin and its stdout read into `out`; returns 1 when it exited with 0. */
static int run_command(const char *body, size_t len, buf_t *out) {
  int in[2], outp[2];
  out->len = 0;
  if (pipe2(in, O_CLOEXEC) != 0) {
    perror("floor-server: pipe");
    return 0;
  }
  if (pipe2(outp, O_CLOEXEC) != 0) {
    perror("floor-server: pipe");
    close(in[0]);
    close(in[1]);
    return 0;
  }
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGPIPE, SIG_DFL); /* ignored in the server, and an ignored signal stays ignored across exec */
    /* dup2 clears close-on-exec on 0 and 1; every other descriptor of the server closes on exec */
    if (dup2(in[0], 0) < 0 || dup2(outp[1], 1) < 0) die("dup2");
    execvp(command[0], command);
    fprintf(stderr, "floor-server: exec %s: %s\n", command[0], strerror(errno));
    _exit(127);
  }
  close(in[0]);
  close(outp[1]);
  if (pid < 0) {
    perror("floor-server: fork");
    close(in[1]);
    close(outp[0]);
    return 0;
  }

  int to = in[1], from = outp[0], ok = 1;
  size_t sent = 0;
  if (len == 0) {
    close(to);
    to = -1;
  } else {
    fcntl(to, F_SETFL, O_NONBLOCK); /* a pipe's write end has no other status flag to keep */
  }
  while (from >= 0) {
    struct pollfd fds[2] = {{.fd = from, .events = POLLIN}, {.fd = to, .events = POLLOUT}};
    if (poll(fds, to >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (to >= 0 && fds[1].revents) {
      ssize_t n = write(to, body + sent, len - sent);
      if (n > 0) sent += (size_t)n;
      else if (n < 0 && errno != EINTR && errno != EAGAIN) sent = len; /* EPIPE: the command reads no more */
      if (sent == len) {
        close(to);
        to = -1;
      }
    }
    if (fds[0].revents) {
      buf_reserve(out, READ_CHUNK);
      ssize_t n = read(from, out->data + out->len, out->cap - out->len);
      if (n > 0) {
        out->len += (size_t)n;
        if (out->len > MAX_OUTPUT) {
          fprintf(stderr, "floor-server: %s printed more than %u bytes; killed\n", command[0], MAX_OUTPUT);
          kill(pid, SIGKILL);
          ok = 0;
        }
      }
      if (n == 0 || (n < 0 && errno != EINTR) || !ok) {
        close(from);
        from = -1;
      }
    }
  }
  if (to >= 0) close(to);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) die("waitpid");
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* Serves the requests of one connection, in order, until it closes or asks to. */
static void serve_connection(int fd) {
  buf_t in = {0}, out = {0};
  request_t r;
  for (;;) {
    /* Empty lines before a request line are allowed, and some clients send one after a body. */
    size_t blank = 0;
    while (in.len - blank >= 2 && in.data[blank] == '\r' && in.data[blank + 1] == '\n') blank += 2;
    if (blank) buf_consume(&in, blank);

    char *end = in.len >= 4 ? memmem(in.data, in.len, "\r\n\r\n", 4) : NULL;
    size_t head_len = end ? (size_t)(end - in.data) + 4 : 0;
    if (head_len > MAX_HEAD || (!end && in.len >= MAX_HEAD)) {
      respond(fd, 431, NULL, 0, NULL);
      break;
    }
    if (!end) {
      if (!fill(fd, &in)) break;
      continue;
    }
    int status = parse_head(in.data, head_len, &r);
    if (status == 0 && r.content_length > MAX_BODY) status = 413;
    if (status) {
      respond(fd, status, NULL, 0, NULL);
      break;
    }
    size_t need = head_len + r.content_length;
    if (in.len < need) {
      static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
      struct iovec iov = {.iov_base = (void *)go_on, .iov_len = sizeof go_on - 1};
      if (r.expect_continue && write_all(fd, &iov, 1) < 0) break;
      buf_reserve(&in, need - in.len);
      while (in.len < need)
        if (!fill(fd, &in)) goto done;
    }
    int ok = run_command(in.data + head_len, r.content_length, &out);
    if (respond(fd, ok ? 200 : 502, out.data, ok ? out.len : 0, &r) < 0) goto done;
    buf_consume(&in, need);
    if (!r.keep_alive) break;
  }
done:
  close_connection(fd);
}

static void on_terminate(int sig) {
  (void)sig;
  _exit(0);
}

/* Accepts forever, a process per connection. */
static void serve(int listener) {
  struct sigaction sa = {.sa_handler = SIG_IGN};
  sigaction(SIGPIPE, &sa, NULL);
  sa.sa_handler = SIG_DFL;
  sa.sa_flags = SA_NOCLDWAIT; /* connection processes are reaped by the kernel */
  sigaction(SIGCHLD, &sa, NULL);
  sa.sa_handler = on_terminate;
  sa.sa_flags = 0;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  main_pid = getpid();

  for (;;) {
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        perror("floor-server: accept");
        poll(NULL, 0, 10);
        continue;
      }
      die("accept");
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(listener);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != main_pid) _exit(0); /* the server ended before prctl */
      /* a connection process waits for its commands: it must not auto-reap them, as the main one does */
      struct sigaction dfl = {.sa_handler = SIG_DFL};
      sigaction(SIGCHLD, &dfl, NULL);
      sigaction(SIGTERM, &dfl, NULL);
      sigaction(SIGINT, &dfl, NULL);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      serve_connection(fd);
      _exit(0);
    }
    if (pid < 0) {
      perror("floor-server: fork"); /* the client sees its connection closed */
      poll(NULL, 0, 10);
    }
    close(fd);
  }
}

/* Parses HOST:PORT, HOST being numeric IPv4 or [IPv6]. */
static socklen_t parse_address(const char *spec, struct sockaddr_storage *address) {
  const char *colon = strrchr(spec, ':');
  char host[64], *rest;
  if (!colon || (size_t)(colon - spec) >= sizeof host) fail("not HOST:PORT: ", spec);
  memcpy(host, spec, (size_t)(colon - spec));
  host[colon - spec] = '\0';
  errno = 0;
  long port = strtol(colon + 1, &rest, 10);
  if (colon[1] == '\0' || *rest != '\0' || errno != 0 || port < 0 || port > 65535) fail("not a port: ", colon + 1);

  memset(address, 0, sizeof *address);
  size_t n = strlen(host);
  if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)address;
    host[n - 1] = '\0';
    if (inet_pton(AF_INET6, host + 1, &v6->sin6_addr) != 1) fail("not an IPv6 address: ", host + 1);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((unsigned short)port);
    return sizeof *v6;
  }
  struct sockaddr_in *v4 = (struct sockaddr_in *)address;
  if (inet_pton(AF_INET, host, &v4->sin_addr) != 1) fail("not a numeric IPv4 address (or [IPv6]): ", host);
  v4->sin_family = AF_INET;
  v4->sin_port = htons((unsigned short)port);
  return sizeof *v4;
}

static int listen_on(const char *spec) {
  struct sockaddr_storage address;
  socklen_t len = parse_address(spec, &address);
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) die("setsockopt SO_REUSEADDR");
  if (bind(fd, (struct sockaddr *)&address, len) != 0) {
    fprintf(stderr, "floor-server: bind %s: %s\n", spec, strerror(errno));
    _exit(111);
  }
  if (listen(fd, BACKLOG) != 0) die("listen");
  return fd;
}

/* An inherited socket: it must be listening; it is made blocking (the accept loop blocks) and
 * close-on-exec (commands must not inherit it). */
static int inherited_listener(const char *arg) {
  char *rest;
  errno = 0;
  long fd = strtol(arg, &rest, 10);
  if (*arg == '\0' || *rest != '\0' || errno != 0 || fd < 0 || fd > 1 << 20) fail("not a descriptor: ", arg);
  int listening = 0;
  socklen_t len = sizeof listening;
  if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening)
    fail("not a listening socket: fd ", arg);
  int flags = fcntl((int)fd, F_GETFL);
  if (flags < 0 || fcntl((int)fd, F_SETFL, flags & ~O_NONBLOCK) != 0 || fcntl((int)fd, F_SETFD, FD_CLOEXEC) != 0) die("fcntl");
  return (int)fd;
}

int main(int argc, char **argv) {
  const char *listen_spec = NULL, *fd_arg = NULL, *bind_spec = NULL;
  int pass = 0, i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen_spec = argv[++i];
    else if (strcmp(argv[i], "--fd") == 0 && i + 1 < argc) fd_arg = argv[++i];
    else if (strcmp(argv[i], "--bind") == 0 && i + 1 < argc) bind_spec = argv[++i];
    else if (strcmp(argv[i], "--pass") == 0) pass = 1;
    else usage();
  }
  if (i + 1 >= argc || (!!listen_spec + !!fd_arg + !!bind_spec) != 1 || pass != !!bind_spec) usage();
  command = argv + i + 1;

  /* 0, 1 and 2 must be open, or a pipe could land on one and be closed at exec. */
  for (int fd = 0; fd < 3; fd++)
    if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd) die("open /dev/null");

  if (bind_spec) {
    int fd = listen_on(bind_spec);
    if (fd == PASSED_FD ? fcntl(fd, F_SETFD, 0) != 0 : dup2(fd, PASSED_FD) != PASSED_FD) die("dup2");
    if (fd != PASSED_FD) close(fd);
    execvp(command[0], command);
    fprintf(stderr, "floor-server: exec %s: %s\n", command[0], strerror(errno));
    return 127;
  }
  serve(listen_spec ? listen_on(listen_spec) : inherited_listener(fd_arg));
  return 0;
}
