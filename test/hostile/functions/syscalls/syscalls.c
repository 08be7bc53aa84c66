/*
 * Tries the system calls that reach the kernel's less travelled paths and prints, a line each, what the
 * kernel answered: "allowed" or the error. The hostile suite compiles it (gcc -static) into this
 * function's folder before the gateway starts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long result) {
  printf("%s: %s\n", name, result >= 0 ? "allowed" : strerror(errno));
}

/* clone(2) with `flags`, the child exiting at once: the raw system call, as libc's fork would not. */
static long try_clone(unsigned long flags) {
  long pid = syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, 0, 0);
  return pid;
}

static long try_clone3(unsigned long flags) {
  struct clone_args args;
  memset(&args, 0, sizeof args);
  args.flags = flags;
  args.exit_signal = SIGCHLD;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid == 0) _exit(0);
  if (pid > 0) waitpid((pid_t)pid, 0, 0);
  return pid;
}

int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  /* Controls: what every program needs still works. */
  report("fork", try_clone(0));
  report("thread-like clone", try_clone(CLONE_FILES | CLONE_FS));
  /* Namespaces. */
  report("clone(CLONE_NEWUSER)", try_clone(CLONE_NEWUSER));
  report("clone(CLONE_NEWNS)", try_clone(CLONE_NEWNS));
  report("clone(CLONE_NEWNET)", try_clone(CLONE_NEWNET));
  report("clone3(CLONE_NEWUSER)", try_clone3(CLONE_NEWUSER));
  report("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
  report("unshare(CLONE_NEWNS)", unshare(CLONE_NEWNS));
  report("setns", syscall(SYS_setns, 0, 0));
  /* Mounts. */
  report("mount", mount("none", "/tmp", "tmpfs", 0, 0));
  report("umount2", umount2("/tmp", MNT_DETACH));
  report("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
  /* The kernel keyring, the kernel log, and other doors. */
  report("keyctl", syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, 0));
  report("add_key", syscall(SYS_add_key, "user", "fnix", "x", 1, -3 /* KEY_SPEC_SESSION_KEYRING */));
  report("syslog", syscall(SYS_syslog, 10 /* SYSLOG_ACTION_SIZE_BUFFER */, 0, 0));
  report("bpf", syscall(SYS_bpf, 0, 0, 0));
  report("perf_event_open", syscall(SYS_perf_event_open, 0, 0, -1, -1, 0));
  report("userfaultfd", syscall(SYS_userfaultfd, 0));
  report("io_uring_setup", syscall(SYS_io_uring_setup, 1, 0));
  return 0;
}
