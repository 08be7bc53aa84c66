/*
 * fnix-agent: PID 1 of every fnix container.
 *
 * The agent connects once to a unix socket that the host listens on (mounted read-only at
 * /run/fnix/agent.sock) and then runs one invocation at a time, as the host asks, multiplexing the
 * child's stdin, stdout and stderr over that one connection. This is what lets a warm invocation
 * avoid spawning any podman process: the host writes a SPAWN frame and reads output frames.
 *
 * Wire format, both directions: [type:u8][length:u32 big-endian][payload]. See runtime/agent/protocol.ts,
 * which is the other half of this file and documents every frame.
 *
 * Lifetime of an invocation:
 *   SPAWN -> child runs (its own session and process group) -> STDIN/SIGNAL/RESIZE/KILL frames ->
 *   the main child exits (or KILL) -> every other process in the container is killed (kill(-1), which
 *   spares PID 1) -> stdout/stderr are read to EOF -> EXIT -> /tmp, /dev/shm and /dev/mqueue are
 *   emptied, and what children inherit from the agent (limits, priority, scheduling, CPUs) is checked
 *   -> READY (unclean when either failed: the container is then retired).
 *
 * Secrets: a SPAWN may carry files, which the agent writes in /run/secrets (a tmpfs of the container's
 * own, mode 0700, the container's uid) just before the fork, each mode 0400, and removes with /tmp's
 * cleanup. A container whose /run/secrets cannot be emptied reports READY unclean and is retired, so
 * that the next function never finds the last one's secrets. The SPAWN frame is zeroed once the child
 * is forked, and so are buffers the agent's input moves out of.
 *
 * The agent never blocks on the host: the socket is non-blocking, output is buffered up to OUT_HIGH and
 * then the child's pipes are left unread (so the child blocks, which is the backpressure), and stdin is
 * bounded by a credit window that the host must respect.
 *
 * Relays: a function that serves HTTP (a "serve" function) listens on the container's own loopback,
 * which nothing outside the container can reach (--network none). For each OPEN frame the agent
 * connects to 127.0.0.1:<port>, then to the host's relay socket (/run/fnix/relay.sock), writes the
 * OPEN's id there as 4 bytes, and copies bytes both ways until both directions have ended (each end's
 * EOF is passed on as a half-close). A connection that cannot be made is reported as OPEN_FAILED with
 * its errno. Relays exist only while an invocation runs, and all of them close when it ends.
 *
 * When invoked as "env" (the rootfs links /usr/bin/env here) it behaves as a minimal env(1), so that
 * "#!/usr/bin/env bash" finds bash on the function's PATH.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define AGENT_VERSION "fnix-agent 1"
#define SOCKET_PATH "/run/fnix/agent.sock"
#define SECRETS_DIR "/run/secrets"
#define RELAY_SOCKET_PATH "/run/fnix/relay.sock"

/* host -> agent */
#define F_SPAWN 0x01
#define F_STDIN 0x02
#define F_SIGNAL 0x03
#define F_RESIZE 0x04
#define F_KILL 0x05
#define F_OPEN 0x06
/* agent -> host */
#define F_HELLO 0x81
#define F_STDOUT 0x82
#define F_STDERR 0x83
#define F_SPAWNED 0x84
#define F_EXIT 0x85
#define F_READY 0x86
#define F_CREDIT 0x87
#define F_OPEN_FAILED 0x88

#define HEADER_SIZE 5
#define MAX_FRAME (1u << 20)
#define STDIN_WINDOW (256u * 1024u)
#define OUT_HIGH (256u * 1024u)
#define READ_CHUNK 65536
#define MAX_RELAYS 1024
#define RELAY_BUF 32768

extern char **environ;

typedef struct {
  unsigned char *data;
  size_t len, cap, off;
} buf_t;

static int sock = -1;
static int sigfd = -1;
static buf_t in_buf, out_buf, stdin_buf;

static pid_t child = 0;        /* main process of the current invocation, 0 when idle */
static int running = 0;        /* an invocation is under way (until EXIT is sent) */
static int child_reaped = 0;
static int child_status = 0;
static int killed = 0;         /* the host asked for KILL */
static int tty = 0;
static int fd_stdin = -1, fd_stdout = -1, fd_stderr = -1, fd_master = -1;
static int stdin_eof = 0;      /* host closed stdin; close the pipe once stdin_buf drains */
/* Frames queued during an invocation are held back for up to LINGER_NS rather than written at once:
 * a command that writes its output and exits (most do, within a fraction of a millisecond) then has
 * SPAWNED, its output and EXIT reach the host in one write, which the host handles in one wake-up and
 * answers with a Content-Length. Output is never held past the deadline, nor beyond FLUSH_AT bytes,
 * nor on a terminal, where every keystroke's echo goes out at once. */
#define LINGER_NS 1000000LL
#define FLUSH_AT (64u * 1024u)
static long long linger_until = 0; /* monotonic deadline of the oldest held frame, 0 when none is */
static int urgent = 0;             /* a queued frame must go now (stdin credit) */
static uint32_t held_credit = 0;   /* stdin credit queued and not yet written */
static int flushing = 0;           /* a flush could not write everything: the rest goes as soon as it can */
/* What the agent's children inherit from it, as it was when the agent started. A function runs as the
 * agent's uid, so the kernel lets it change the agent's resource limits (prlimit), priority
 * (setpriority, on pid 1 or on the whole uid), scheduling, I/O priority and CPU affinity, and every
 * later invocation would inherit the change. After each invocation the agent compares: affinity it sets
 * back; anything else it cannot be sure to undo (raising a limit or a priority needs privileges it does
 * not have), so it reports itself unclean, and the container is retired. */
static struct {
  struct rlimit limits[RLIM_NLIMITS];
  int nice;
  int policy;
  struct sched_param param;
  long ioprio;
  cpu_set_t cpus;
} inherited;

static void snapshot_inherited(void) {
  for (int r = 0; r < RLIM_NLIMITS; r++) getrlimit(r, &inherited.limits[r]);
  errno = 0;
  inherited.nice = getpriority(PRIO_PROCESS, 0);
  inherited.policy = sched_getscheduler(0);
  sched_getparam(0, &inherited.param);
  inherited.ioprio = syscall(SYS_ioprio_get, 1 /* IOPRIO_WHO_PROCESS */, 0);
  sched_getaffinity(0, sizeof inherited.cpus, &inherited.cpus);
}

/* 1 when what the next invocation inherits is as it was at start (affinity is set back if need be). */
static int inherited_intact(void) {
  for (int r = 0; r < RLIM_NLIMITS; r++) {
    struct rlimit now;
    if (getrlimit(r, &now) != 0 || now.rlim_cur != inherited.limits[r].rlim_cur || now.rlim_max != inherited.limits[r].rlim_max) return 0;
  }
  struct sched_param param;
  errno = 0;
  if (getpriority(PRIO_PROCESS, 0) != inherited.nice || sched_getscheduler(0) != inherited.policy) return 0;
  if (sched_getparam(0, &param) != 0 || param.sched_priority != inherited.param.sched_priority) return 0;
  if (syscall(SYS_ioprio_get, 1, 0) != inherited.ioprio) return 0;
  cpu_set_t cpus;
  if (sched_getaffinity(0, sizeof cpus, &cpus) != 0) return 0;
  if (!CPU_EQUAL(&cpus, &inherited.cpus) && sched_setaffinity(0, sizeof inherited.cpus, &inherited.cpus) != 0) return 0;
  return 1;
}

static void die(const char *what) {
  fprintf(stderr, "fnix-agent: %s: %s\n", what, strerror(errno));
  _exit(111);
}

/* Makes room for `extra` bytes. What is moved out of is zeroed, not left behind: the host's input may
 * hold secrets (SPAWN files and variables), and a later invocation's child is forked from this memory. */
static void buf_reserve(buf_t *b, size_t extra) {
  if (b->off > 0 && b->off == b->len) b->off = b->len = 0;
  if (b->len + extra <= b->cap) return;
  if (b->off > 0) {
    size_t old_len = b->len;
    memmove(b->data, b->data + b->off, b->len - b->off);
    b->len -= b->off;
    b->off = 0;
    memset(b->data + b->len, 0, old_len - b->len);
    if (b->len + extra <= b->cap) return;
  }
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra) cap *= 2;
  unsigned char *p = malloc(cap);
  if (!p) die("malloc");
  if (b->data) {
    memcpy(p, b->data, b->len);
    explicit_bzero(b->data, b->cap);
    free(b->data);
  }
  b->data = p;
  b->cap = cap;
}

static void buf_append(buf_t *b, const void *p, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static size_t buf_pending(const buf_t *b) { return b->len - b->off; }

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static uint32_t get_u32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint16_t get_u16(const unsigned char *p) { return (uint16_t)((p[0] << 8) | p[1]); }

/* Queues a frame for the host. */
static void send_frame(unsigned char type, const void *payload, uint32_t len) {
  unsigned char h[HEADER_SIZE];
  h[0] = type;
  put_u32(h + 1, len);
  buf_append(&out_buf, h, HEADER_SIZE);
  if (len) buf_append(&out_buf, payload, len);
}

static void send_u32(unsigned char type, uint32_t v) {
  unsigned char p[4];
  put_u32(p, v);
  send_frame(type, p, 4);
  /* Credit is held back only while the host cannot be waiting for it: the host stops sending when what
   * it has in flight and its next frame (at most a quarter of the window) would pass the window, and
   * what is in flight is at most the credit held here plus what has not reached the child yet. */
  if (type == F_CREDIT && (held_credit += v) >= STDIN_WINDOW / 4) urgent = 1;
}

/* Writes as much queued output as the socket takes without blocking. */
static void flush_out(void) {
  while (buf_pending(&out_buf) > 0) {
    ssize_t n = write(sock, out_buf.data + out_buf.off, buf_pending(&out_buf));
    if (n > 0) { out_buf.off += n; continue; }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    _exit(0); /* the host went away: the container has no reason to live */
  }
  out_buf.off = out_buf.len = 0;
}

/* Blocks until every queued frame is written (used only where ordering demands it). */
static void flush_out_blocking(void) {
  while (buf_pending(&out_buf) > 0) {
    flush_out();
    if (buf_pending(&out_buf) == 0) break;
    struct pollfd p = {.fd = sock, .events = POLLOUT};
    poll(&p, 1, -1);
  }
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void kill_everything(void) {
  /* PID 1 is spared by kill(-1): this reaches every other process in the container. */
  kill(-1, SIGKILL);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag;
  if (ftw->level == 0) return 0;
  if (remove(path) != 0 && errno != ENOENT) {
    /* a directory made unwritable by its owner: make it writable and retry once */
    chmod(path, 0700);
    remove(path);
  }
  return 0;
}

/* 1 when `dir` holds nothing (or is not a directory one can list: 0 then, unless it does not exist). */
static int is_empty(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT || errno == ENOTDIR;
  int empty = 1;
  struct dirent *e;
  while (empty && (e = readdir(d)))
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) empty = 0;
  closedir(d);
  return empty;
}

/* Empties a directory tree without following symlinks or crossing mounts; returns 1 when it is empty.
 * Most invocations leave nothing behind: that is one listing, and no walk. */
static int empty_dir(const char *dir) {
  if (is_empty(dir)) return 1;
  struct stat st;
  if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return 1;
  /* the second pass catches directories that were unwritable on the first */
  for (int pass = 0; pass < 2; pass++) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
  return is_empty(dir);
}

/* Empties /run/secrets and gives it back its mode (the function, running as its owner, may have
 * changed it); 1 when it is empty and 0700 again, or does not exist (nothing can have been written). */
static int reset_secrets(void) {
  struct stat st;
  if (lstat(SECRETS_DIR, &st) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return 0;
  if ((st.st_mode & 07777) != 0700 && chmod(SECRETS_DIR, 0700) != 0) return 0;
  if (!empty_dir(SECRETS_DIR)) return 0;
  return lstat(SECRETS_DIR, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700;
}

/* Why the files of a SPAWN could not be written (names and errno only, never contents); "" when they were. */
static char files_error[160];

/* 1 when `name` is a plain file name (what protocol.ts encodeSpawn allows). */
static int plain_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 255 || name[0] == '.' || name[0] == '-') return 0;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-')) return 0;
  }
  return 1;
}

/* Writes one file in `dir` (mode 0400), refusing to follow or replace anything already there. */
static int write_secret(int dir, const char *name, const unsigned char *data, uint32_t len) {
  int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
  if (fd < 0) return -1;
  uint32_t done = 0;
  while (done < len) {
    ssize_t n = write(fd, data + done, len - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) { int e = n < 0 ? errno : EIO; close(fd); errno = e; return -1; }
    done += (uint32_t)n;
  }
  if (fchmod(fd, 0400) != 0) { int e = errno; close(fd); errno = e; return -1; }
  return close(fd);
}

/* Parses the files of a SPAWN ([filec:u16] then name NUL, [len:u32], bytes, each) from `s` to `end`
 * and writes them in SECRETS_DIR. A malformed list is a protocol error; a file that cannot be written
 * is reported in files_error, and the child then says so and exits 126 instead of running the command. */
static void write_files(const unsigned char *s, const unsigned char *end) {
  files_error[0] = 0;
  if (end - s < 2) _exit(112);
  unsigned filec = get_u16(s);
  s += 2;
  int dir = open(SECRETS_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dir < 0) snprintf(files_error, sizeof files_error, "cannot open %s: %s", SECRETS_DIR, strerror(errno));
  for (unsigned i = 0; i < filec; i++) {
    const unsigned char *z = memchr(s, 0, end - s);
    if (!z || end - (z + 1) < 4) _exit(112);
    const char *name = (const char *)s;
    uint32_t len = get_u32(z + 1);
    const unsigned char *data = z + 5;
    if ((size_t)(end - data) < len || !plain_name(name)) _exit(112);
    if (!files_error[0] && write_secret(dir, name, data, len) != 0)
      snprintf(files_error, sizeof files_error, "cannot write %s/%.64s: %s", SECRETS_DIR, name, strerror(errno));
    s = data + len;
  }
  if (s != end) _exit(112);
  if (dir >= 0) close(dir);
}

/* Kills and reaps until no process but this one is left in the container. */
static void reap_all_blocking(void) {
  for (;;) {
    kill_everything();
    if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD) return;
  }
}

/* One relayed connection: the function's server (tcp) on one side, the host (host) on the other. */
typedef struct {
  int used;
  int connecting;           /* the tcp connect is under way */
  uint32_t id;
  int tcp, host;
  unsigned char *to_host, *to_tcp; /* RELAY_BUF each */
  size_t to_host_len, to_host_off, to_tcp_len, to_tcp_off;
  int tcp_eof, host_eof;    /* that side has sent everything */
  int tcp_shut, host_shut;  /* the EOF was passed on to that side */
} relay_t;

static relay_t relays[MAX_RELAYS];
static int relay_top = 0; /* one past the highest slot in use: the loops stop there */

static void open_failed(uint32_t id, int err) {
  unsigned char p[8];
  put_u32(p, id);
  put_u32(p + 4, (uint32_t)err);
  send_frame(F_OPEN_FAILED, p, 8);
  urgent = 1;
}

static void relay_close(relay_t *r) {
  if (!r->used) return;
  if (r->connecting) open_failed(r->id, ECONNABORTED);
  if (r->tcp >= 0) close(r->tcp);
  if (r->host >= 0) close(r->host);
  free(r->to_host);
  free(r->to_tcp);
  memset(r, 0, sizeof *r);
  r->tcp = r->host = -1;
  while (relay_top > 0 && !relays[relay_top - 1].used) relay_top--;
}

static void close_all_relays(void) {
  for (int i = relay_top - 1; i >= 0; i--) relay_close(&relays[i]);
}

/* OPEN: [id:u32][port:u16]. Starts a non-blocking connect to the server on the container's loopback. */
static void relay_open(const unsigned char *p, uint32_t len) {
  if (len != 6) _exit(112);
  uint32_t id = get_u32(p);
  uint16_t port = get_u16(p + 4);
  if (!running) { open_failed(id, ENOTCONN); return; }
  relay_t *r = NULL;
  for (int i = 0; i < MAX_RELAYS && !r; i++) if (!relays[i].used) r = &relays[i];
  if (!r) { open_failed(id, EMFILE); return; }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) { open_failed(id, errno); return; }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  if (rc != 0 && errno != EINPROGRESS) { int e = errno; close(fd); open_failed(id, e); return; }
  memset(r, 0, sizeof *r);
  r->used = 1;
  if (r - relays + 1 > relay_top) relay_top = (int)(r - relays) + 1;
  r->connecting = 1;
  r->id = id;
  r->tcp = fd;
  r->host = -1;
}

/* The tcp connect finished: on success, connects to the host and says which OPEN this is. */
static void relay_connected(relay_t *r) {
  int err = 0;
  socklen_t l = sizeof err;
  if (getsockopt(r->tcp, SOL_SOCKET, SO_ERROR, &err, &l) != 0) err = errno;
  if (err == EINPROGRESS || err == EALREADY) return;
  r->connecting = 0;
  if (err) { open_failed(r->id, err); r->connecting = 0; relay_close(r); return; }
  int h = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strncpy(addr.sun_path, RELAY_SOCKET_PATH, sizeof addr.sun_path - 1);
  unsigned char id[4];
  put_u32(id, r->id);
  if (h < 0 || connect(h, (struct sockaddr *)&addr, sizeof addr) != 0 || write(h, id, 4) != 4) {
    int e = errno ? errno : EIO;
    if (h >= 0) close(h);
    open_failed(r->id, e);
    relay_close(r);
    return;
  }
  r->host = h;
  r->to_host = malloc(RELAY_BUF);
  r->to_tcp = malloc(RELAY_BUF);
  if (!r->to_host || !r->to_tcp) die("malloc");
}

/* Moves what `src` has into `buf` (when it is empty), and what `buf` holds into `dst`. 0 on an error. */
static int relay_pump(int src, int dst, unsigned char *buf, size_t *len, size_t *off, int *src_eof, int *dst_shut) {
  if (*len == *off && !*src_eof) {
    *len = *off = 0;
    ssize_t n = read(src, buf, RELAY_BUF);
    if (n > 0) *len = (size_t)n;
    else if (n == 0) *src_eof = 1;
    else if (errno != EAGAIN && errno != EINTR) return 0;
  }
  while (*off < *len) {
    ssize_t n = write(dst, buf + *off, *len - *off);
    if (n > 0) { *off += (size_t)n; continue; }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    return 0;
  }
  if (*off == *len && *src_eof && !*dst_shut) {
    shutdown(dst, SHUT_WR);
    *dst_shut = 1;
  }
  return 1;
}

static void relay_step(relay_t *r, short host_rev) {
  if (r->connecting) { relay_connected(r); return; }
  int ok = relay_pump(r->tcp, r->host, r->to_host, &r->to_host_len, &r->to_host_off, &r->tcp_eof, &r->host_shut) &&
           relay_pump(r->host, r->tcp, r->to_tcp, &r->to_tcp_len, &r->to_tcp_off, &r->host_eof, &r->tcp_shut);
  /* The host closed its end for good (POLLHUP is reported whatever was asked for): nothing the server
   * sends can reach it any more. Without this, the loop wakes at once on every poll. */
  if (!ok || (r->host_shut && r->tcp_shut) || (r->host_eof && (host_rev & (POLLHUP | POLLERR)))) relay_close(r);
}

/* The poll events a relay waits for, on its tcp side and its host side. */
static short relay_events_tcp(const relay_t *r) {
  if (r->connecting) return POLLOUT;
  short e = 0;
  if (!r->tcp_eof && r->to_host_len == r->to_host_off) e |= POLLIN;
  if (r->to_tcp_off < r->to_tcp_len) e |= POLLOUT;
  return e;
}

static short relay_events_host(const relay_t *r) {
  short e = 0;
  if (!r->host_eof && r->to_tcp_len == r->to_tcp_off) e |= POLLIN;
  if (r->to_host_off < r->to_host_len) e |= POLLOUT;
  return e;
}

/* Ends the invocation: everything is reaped and drained. Reports EXIT, cleans up, reports READY. */
static void finish_invocation(void) {
  unsigned char p[6];
  if (WIFSIGNALED(child_status)) {
    p[0] = 1;
    put_u32(p + 1, WTERMSIG(child_status));
  } else {
    p[0] = 0;
    put_u32(p + 1, WEXITSTATUS(child_status));
  }
  p[5] = killed ? 1 : 0;
  close_all_relays();
  send_frame(F_EXIT, p, 6);
  flush_out_blocking();
  close_fd(&fd_stdin);
  close_fd(&fd_stdout);
  close_fd(&fd_stderr);
  close_fd(&fd_master);
  stdin_buf.off = stdin_buf.len = 0;
  reap_all_blocking();
  unsigned char clean = empty_dir("/tmp") & empty_dir("/dev/shm") & empty_dir("/dev/mqueue") & reset_secrets();
  if (!inherited_intact()) clean = 0;
  child = 0;
  running = 0;
  child_reaped = 0;
  killed = 0;
  tty = 0;
  stdin_eof = 0;
  send_frame(F_READY, &clean, 1);
}

static void reap(void) {
  int st;
  pid_t p;
  while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
    if (p == child && !child_reaped) {
      child_reaped = 1;
      child_status = st;
      kill_everything();
    }
  }
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Parses a SPAWN payload and starts the child. Layout (protocol.ts encodeSpawn):
 * [flags:u8][cols:u16][rows:u16][argc:u16][envc:u16] then cwd, argv..., env... as NUL-terminated strings,
 * then, when flags has bit 1, the files (see write_files). */
static void spawn(const unsigned char *p, uint32_t len) {
  if (running || len < 9) _exit(112);
  int flags = p[0];
  unsigned short cols = get_u16(p + 1), rows = get_u16(p + 3);
  unsigned argc = get_u16(p + 5), envc = get_u16(p + 7);
  if (argc == 0) _exit(112);
  char **argv = calloc(argc + 1, sizeof(char *));
  char **envp = calloc(envc + 1, sizeof(char *));
  if (!argv || !envp) die("calloc");
  const char *s = (const char *)p + 9, *end = (const char *)p + len;
  const char *cwd = NULL;
  for (unsigned i = 0; i < 1 + argc + envc; i++) {
    const char *z = memchr(s, 0, end - s);
    if (!z) _exit(112);
    if (i == 0) cwd = s;
    else if (i <= argc) argv[i - 1] = (char *)s;
    else envp[i - 1 - argc] = (char *)s;
    s = z + 1;
  }
  files_error[0] = 0;
  if (flags & 2) write_files((const unsigned char *)s, (const unsigned char *)end);

  tty = flags & 1;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  int slave = -1;
  if (tty) {
    fd_master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd_master < 0 || grantpt(fd_master) || unlockpt(fd_master)) die("openpt");
    slave = open(ptsname(fd_master), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) die("open pts");
    struct winsize ws = {.ws_row = rows ? rows : 24, .ws_col = cols ? cols : 80};
    ioctl(fd_master, TIOCSWINSZ, &ws);
  } else if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
    die("pipe");
  }

  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    if (tty) {
      int ctty_error = ioctl(slave, TIOCSCTTY, 0) == 0 ? 0 : errno;
      dup2(slave, 0); dup2(slave, 1); dup2(slave, 2);
      /* without a controlling terminal, Ctrl-C and job control do nothing: say so on the terminal */
      if (ctty_error) dprintf(2, "fnix-agent: no controlling terminal: %s\r\n", strerror(ctty_error));
    } else {
      dup2(in[0], 0); dup2(out[1], 1); dup2(err[1], 2);
    }
    if (files_error[0]) {
      dprintf(2, "fnix-agent: %s\n", files_error);
      _exit(126);
    }
    umask(022);
    /* At the memory limit the kernel kills the function's processes, not the agent: everything the
     * command starts inherits this score. (A process may lower its own score back to 0, which only
     * makes it an equal candidate with the agent, never a preferred one.) */
    prctl(PR_SET_DUMPABLE, 1); /* the agent is not dumpable, and /proc/self is root's until this */
    int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (oom >= 0) {
      if (write(oom, "1000", 4) < 0) { /* best effort */ }
      close(oom);
    }
    if (chdir(cwd) != 0) {
      dprintf(2, "fnix-agent: cannot enter %s: %s\n", cwd, strerror(errno));
      _exit(127);
    }
    environ = envp;
    execvp(argv[0], argv);
    int e = errno;
    dprintf(2, "fnix-agent: cannot execute %s: %s%s\n", argv[0], strerror(e),
            e == ENOENT && strchr(argv[0], '/') ? " (if it is a script, is its #! interpreter on PATH?)" : "");
    _exit(e == ENOENT ? 127 : 126);
  }
  if (tty) {
    close(slave);
    set_nonblock(fd_master);
  } else {
    close(in[0]); close(out[1]); close(err[1]);
    fd_stdin = in[1]; fd_stdout = out[0]; fd_stderr = err[0];
    set_nonblock(fd_stdin); set_nonblock(fd_stdout); set_nonblock(fd_stderr);
  }
  free(argv);
  free(envp);
  /* The child has its copy: the secrets (files and variables) go from the agent's memory. */
  explicit_bzero((void *)p, len);
  child = pid;
  running = 1;
  send_u32(F_SPAWNED, (uint32_t)pid);
}

static void handle_frame(unsigned char type, const unsigned char *p, uint32_t len) {
  switch (type) {
  case F_SPAWN:
    spawn(p, len);
    break;
  case F_STDIN:
    if (!running) break; /* late input for an invocation that already ended */
    if (len == 0) { stdin_eof = 1; break; }
    if ((tty ? fd_master : fd_stdin) < 0) {
      /* the child closed its stdin: discard, but credit, so the host's writer never stalls */
      send_u32(F_CREDIT, len);
      break;
    }
    if (buf_pending(&stdin_buf) + len > 2 * STDIN_WINDOW) _exit(113); /* the host broke the window */
    buf_append(&stdin_buf, p, len);
    break;
  case F_SIGNAL: {
    if (!running || child_reaped || len != 1) break;
    int sig = p[0];
    if (sig != SIGINT && sig != SIGTERM && sig != SIGKILL && sig != SIGHUP && sig != SIGQUIT) break;
    pid_t pg = child;
    if (tty && fd_master >= 0) {
      pid_t fg = tcgetpgrp(fd_master);
      if (fg > 0) pg = fg;
    }
    kill(-pg, sig);
    break;
  }
  case F_RESIZE:
    if (running && tty && fd_master >= 0 && len == 4) {
      struct winsize ws = {.ws_col = get_u16(p), .ws_row = get_u16(p + 2)};
      ioctl(fd_master, TIOCSWINSZ, &ws);
    }
    break;
  case F_OPEN:
    relay_open(p, len);
    break;
  case F_KILL:
    if (running) {
      killed = 1;
      kill_everything();
    }
    break;
  default:
    _exit(112);
  }
}

static void read_socket(void) {
  for (;;) {
    buf_reserve(&in_buf, READ_CHUNK);
    ssize_t n = read(sock, in_buf.data + in_buf.len, in_buf.cap - in_buf.len);
    if (n == 0) _exit(0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      _exit(0);
    }
    in_buf.len += n;
    while (buf_pending(&in_buf) >= HEADER_SIZE) {
      unsigned char *h = in_buf.data + in_buf.off;
      uint32_t len = get_u32(h + 1);
      if (len > MAX_FRAME) _exit(112);
      if (buf_pending(&in_buf) < HEADER_SIZE + len) break;
      in_buf.off += HEADER_SIZE + len;
      handle_frame(h[0], h + HEADER_SIZE, len);
    }
  }
}

/* Reads what a child's output fd has, up to one chunk, and queues it. Returns 0 at EOF. */
static int pump_output(int *fd, unsigned char type) {
  unsigned char b[READ_CHUNK];
  ssize_t n = read(*fd, b, sizeof b);
  if (n > 0) {
    send_frame(type, b, (uint32_t)n);
    return 1;
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 1;
  /* 0 is EOF on a pipe; EIO is how a pty master reports that every slave fd is closed */
  close_fd(fd);
  return 0;
}

static void pump_stdin(void) {
  while (buf_pending(&stdin_buf) > 0) {
    size_t pending = buf_pending(&stdin_buf);
    ssize_t n = write(tty ? fd_master : fd_stdin, stdin_buf.data + stdin_buf.off, pending);
    if (n > 0) {
      stdin_buf.off += n;
      send_u32(F_CREDIT, (uint32_t)n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    /* the child closed its stdin: what remains is discarded, and credited so the host never stalls */
    send_u32(F_CREDIT, (uint32_t)pending);
    stdin_buf.off = stdin_buf.len = 0;
    if (!tty) close_fd(&fd_stdin);
    return;
  }
  if (stdin_eof && !tty) close_fd(&fd_stdin);
}

static void connect_host(void) {
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  strncpy(addr.sun_path, SOCKET_PATH, sizeof addr.sun_path - 1);
  for (int attempt = 0;; attempt++) {
    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) die("socket");
    if (connect(sock, (struct sockaddr *)&addr, sizeof addr) == 0) break;
    close(sock);
    if (attempt > 500) die("connect " SOCKET_PATH);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  set_nonblock(sock);
}

static long long now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Whether queued frames go now, or may be held back a little longer (see LINGER_NS). */
static int should_flush(void) {
  if (buf_pending(&out_buf) == 0) return 1;
  if (flushing || !running || tty || urgent || buf_pending(&out_buf) >= FLUSH_AT) return 1;
  return linger_until != 0 && now_ns() >= linger_until;
}

/* Minimal env(1): [NAME=VALUE]... COMMAND [ARG]... */
static int env_main(int argc, char **argv) {
  int i = 1;
  if (i < argc && strcmp(argv[i], "--") == 0) i++;
  for (; i < argc && strchr(argv[i], '=') && argv[i][0] != '='; i++) putenv(argv[i]);
  if (i >= argc) {
    for (char **e = environ; *e; e++) puts(*e);
    return 0;
  }
  execvp(argv[i], argv + i);
  fprintf(stderr, "env: '%s': %s\n", argv[i], strerror(errno));
  return errno == ENOENT ? 127 : 126;
}

int main(int argc, char **argv) {
  const char *base = strrchr(argv[0], '/');
  base = base ? base + 1 : argv[0];
  if (strcmp(base, "env") == 0) return env_main(argc, argv);

  /* Not dumpable: the function runs as the same uid, and must not ptrace the agent or open /proc/1/fd. */
  prctl(PR_SET_DUMPABLE, 0);
  signal(SIGPIPE, SIG_IGN);
  snapshot_inherited();
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  sigfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sigfd < 0) die("signalfd");

  /* Podman makes /run/secrets the agent's (its uid's) but not always mode 0700: set it before anything runs. */
  if (!reset_secrets()) die("cannot make " SECRETS_DIR " empty and mode 0700");
  connect_host();
  char hello[64];
  int n = snprintf(hello, sizeof hello, "%s %u", AGENT_VERSION, STDIN_WINDOW);
  send_frame(F_HELLO, hello, (uint32_t)n);

  for (;;) {
    static struct pollfd fds[5 + 2 * MAX_RELAYS];
    static int relay_tcp_at[MAX_RELAYS], relay_host_at[MAX_RELAYS];
    int nfds = 0;
    int out_open = buf_pending(&out_buf) < OUT_HIGH;
    /* held frames need no POLLOUT: the socket being writable would only wake the loop at once */
    int want_write = buf_pending(&out_buf) > 0 && linger_until == 0;
    fds[nfds++] = (struct pollfd){.fd = sock, .events = POLLIN | (want_write ? POLLOUT : 0)};
    fds[nfds++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
    int i_out = -1, i_err = -1, i_in = -1;
    int out_fd = tty ? fd_master : fd_stdout;
    if (out_fd >= 0 && out_open) { i_out = nfds; fds[nfds++] = (struct pollfd){.fd = out_fd, .events = POLLIN}; }
    if (fd_stderr >= 0 && out_open) { i_err = nfds; fds[nfds++] = (struct pollfd){.fd = fd_stderr, .events = POLLIN}; }
    int in_fd = tty ? fd_master : fd_stdin;
    if (in_fd >= 0 && (buf_pending(&stdin_buf) || (stdin_eof && !tty))) {
      i_in = nfds;
      fds[nfds++] = (struct pollfd){.fd = in_fd, .events = POLLOUT};
    }
    /* Only the slots polled now are stepped below: a relay opened meanwhile waits for the next turn. */
    int polled_top = relay_top;
    for (int i = 0; i < polled_top; i++) {
      relay_tcp_at[i] = relay_host_at[i] = -1;
      if (!relays[i].used) continue;
      relay_tcp_at[i] = nfds;
      short te = relay_events_tcp(&relays[i]);
      /* a side with nothing to do is left out: its POLLHUP alone would wake the loop at once, forever */
      fds[nfds++] = (struct pollfd){.fd = te ? relays[i].tcp : -1, .events = te};
      if (relays[i].host >= 0) {
        relay_host_at[i] = nfds;
        fds[nfds++] = (struct pollfd){.fd = relays[i].host, .events = relay_events_host(&relays[i])};
      }
    }
    struct timespec wait, *timeout = NULL;
    if (linger_until) {
      long long left = linger_until - now_ns();
      if (left < 0) left = 0;
      wait = (struct timespec){.tv_sec = left / 1000000000LL, .tv_nsec = left % 1000000000LL};
      timeout = &wait;
    }
    if (ppoll(fds, nfds, timeout, NULL) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sigfd, &si, sizeof si) > 0) {
      }
      reap();
    }
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) read_socket();
    if (i_in >= 0 && fds[i_in].revents) pump_stdin();
    if (i_out >= 0 && fds[i_out].revents) {
      if (tty) pump_output(&fd_master, F_STDOUT);
      else pump_output(&fd_stdout, F_STDOUT);
    }
    if (i_err >= 0 && fds[i_err].revents) pump_output(&fd_stderr, F_STDERR);
    for (int i = 0; i < polled_top; i++) {
      if (!relays[i].used) continue;
      int woke = (relay_tcp_at[i] >= 0 && fds[relay_tcp_at[i]].revents) || (relay_host_at[i] >= 0 && fds[relay_host_at[i]].revents);
      if (woke) relay_step(&relays[i], relay_host_at[i] >= 0 ? fds[relay_host_at[i]].revents : 0);
    }
    if (running && child_reaped && fd_stdout < 0 && fd_stderr < 0 && fd_master < 0) finish_invocation();
    if (should_flush()) {
      linger_until = 0;
      urgent = 0;
      held_credit = 0;
      flush_out();
      flushing = buf_pending(&out_buf) > 0;
    } else if (linger_until == 0) {
      linger_until = now_ns() + LINGER_NS;
    }
  }
}
