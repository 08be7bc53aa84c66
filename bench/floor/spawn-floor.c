/*
 * spawn-floor: the floor of starting a command on this machine, for bench/closure.ts.
 *
 * An interpreter such as python3 spends most of a short invocation starting itself. What fnix adds to
 * that is measured against this: the same binary, started the cheapest way there is, one run after
 * another. It is C, so that no runtime of its own (Node's child_process costs milliseconds) is counted.
 *
 *   spawn-floor MS EXPECTED [--get PORT PATH] -- COMMAND [ARG...]
 *
 * For MS milliseconds, one run at a time: fork, execvp COMMAND (this process's environment and working
 * folder, stdin /dev/null, stderr this process's), read its stdout whole through a pipe, wait for it.
 * Each run prints one line on stdout:
 *   spawn <µs> <cpu µs> ok|bad
 * the microseconds from just before the fork to the wait's return, the command's CPU time (user and
 * system, from wait4), and `bad` when it did not exit with 0 or its stdout was not EXPECTED byte for
 * byte. The CPU time tells work from waiting.
 *
 * With --get, every run is paired with a GET of http://127.0.0.1:PORT/PATH on one keep-alive
 * connection (fnix serving the same command), which must answer 200 with EXPECTED as its body; the two
 * take turns, each going first every other time, so that whatever the machine does (these machines' CPU
 * speed drifts by a third within seconds) weighs on both alike. Each GET prints
 *   get <µs> ok|bad
 * from just before the request is written to the last byte of the response read: what a client as thin
 * as this one waits. The connection is reopened if the server closes it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_OUTPUT (1u << 20)

static void die(const char *what) {
  fprintf(stderr, "spawn-floor: %s: %s\n", what, strerror(errno));
  exit(111);
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

/* One run of the command, its CPU time in *cpu_us; returns whether it exited with 0 and printed exactly `expected`. */
static int run_once(char **command, const char *expected, size_t expected_len, char *out, double *cpu_us) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) < 0) die("pipe2");
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(pipefd[1], 1) < 0) _exit(127);
    execvp(command[0], command);
    fprintf(stderr, "spawn-floor: %s: %s\n", command[0], strerror(errno));
    _exit(127);
  }
  close(pipefd[1]);
  size_t len = 0;
  int overflow = 0;
  for (;;) {
    ssize_t n = read(pipefd[0], out + len, MAX_OUTPUT - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    len += (size_t)n;
    if (len == MAX_OUTPUT) {
      overflow = 1;
      break;
    }
  }
  close(pipefd[0]);
  int status;
  struct rusage usage;
  while (wait4(pid, &status, 0, &usage) < 0)
    if (errno != EINTR) die("wait4");
  *cpu_us = (double)(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) * 1e6 + (double)(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
  return !overflow && WIFEXITED(status) && WEXITSTATUS(status) == 0 && len == expected_len && memcmp(out, expected, len) == 0;
}

/* The GET side: one keep-alive connection and what has been read on it. */
static int port, sock = -1;
static const char *get_path;
static char in[MAX_OUTPUT];
static size_t in_len;

static void open_connection(void) {
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket");
  int one = 1;
  setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(sock, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
  in_len = 0;
}

/* Reads more of the response; returns 0 when the connection ended. */
static int fill(void) {
  if (in_len == sizeof in) return 0;
  for (;;) {
    ssize_t n = read(sock, in + in_len, sizeof in - in_len);
    if (n > 0) {
      in_len += (size_t)n;
      return 1;
    }
    if (n < 0 && errno == EINTR) continue;
    return 0;
  }
}

/* Waits until `in` holds `want` bytes from `from`; returns 0 when the connection ended first. */
static int have(size_t from, size_t want) {
  while (in_len < from + want)
    if (!fill()) return 0;
  return 1;
}

/* The value of header `name` in the head [in, in + head_len), or NULL. */
static const char *header(size_t head_len, const char *name) {
  size_t n = strlen(name);
  const char *p = in, *end = in + head_len;
  while (p < end) {
    if (strncasecmp(p, name, n) == 0 && p[n] == ':') return p + n + 1;
    const char *newline = memchr(p, '\n', (size_t)(end - p));
    if (!newline) break;
    p = newline + 1;
  }
  return NULL;
}

/* One GET and its whole response; returns whether it was 200 with exactly `expected`. The connection is closed on anything odd. */
static int get_once(const char *expected, size_t expected_len) {
  char request[512];
  int len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", get_path);
  if (sock < 0) open_connection();
  if (write(sock, request, (size_t)len) != len) goto broken;
  char *end;
  while (!(end = memmem(in, in_len, "\r\n\r\n", 4)))
    if (!fill()) goto broken;
  size_t head_len = (size_t)(end - in) + 4;
  int status = in_len > 12 ? atoi(in + 9) : 0;
  const char *length = header(head_len, "content-length");
  const char *encoding = header(head_len, "transfer-encoding");
  char body[4096];
  size_t body_len = 0, at = head_len;
  if (length) {
    size_t n = strtoul(length, NULL, 10);
    if (!have(at, n)) goto broken;
    if (n <= sizeof body) memcpy(body, in + at, n);
    body_len = n;
    at += n;
  } else if (encoding && strstr(encoding, "chunked")) {
    for (;;) {
      char *line_end;
      while (!(line_end = memmem(in + at, in_len - at, "\r\n", 2)))
        if (!fill()) goto broken;
      size_t n = strtoul(in + at, NULL, 16);
      at = (size_t)(line_end - in) + 2;
      if (!have(at, n + 2)) goto broken;
      if (body_len + n <= sizeof body) memcpy(body + body_len, in + at, n);
      body_len += n;
      at += n + 2;
      if (n == 0) break;
    }
  } else {
    goto broken;
  }
  memmove(in, in + at, in_len - at);
  in_len -= at;
  return status == 200 && body_len == expected_len && memcmp(body, expected, expected_len) == 0;
broken:
  close(sock);
  sock = -1;
  return 0;
}

int main(int argc, char **argv) {
  int i = 3;
  if (argc > 6 && strcmp(argv[3], "--get") == 0) {
    port = atoi(argv[4]);
    get_path = argv[5];
    i = 6;
  }
  if (argc < i + 2 || strcmp(argv[i], "--") != 0) {
    fputs("usage: spawn-floor MS EXPECTED [--get PORT PATH] -- COMMAND [ARG...]\n", stderr);
    return 64;
  }
  double duration_us = atof(argv[1]) * 1e3;
  const char *expected = argv[2];
  size_t expected_len = strlen(expected);
  char **command = argv + i + 1;
  signal(SIGPIPE, SIG_IGN); /* a server that closed the connection is a failed GET, not the end */
  char *out = malloc(MAX_OUTPUT);
  if (!out) die("malloc");
  setvbuf(stdout, NULL, _IOFBF, 1 << 16);
  double begin = now_us();
  for (long run = 0; now_us() - begin < duration_us; run++) {
    for (int turn = 0; turn < (get_path ? 2 : 1); turn++) {
      if (get_path && (turn + run) % 2 == 0) {
        double t0 = now_us();
        int ok = get_once(expected, expected_len);
        printf("get %.1f %s\n", now_us() - t0, ok ? "ok" : "bad");
      } else {
        double t0 = now_us(), cpu_us = 0;
        int ok = run_once(command, expected, expected_len, out, &cpu_us);
        printf("spawn %.1f %.0f %s\n", now_us() - t0, cpu_us, ok ? "ok" : "bad");
      }
    }
  }
  if (sock >= 0) close(sock);
  return fflush(stdout) == 0 ? 0 : 111;
}
