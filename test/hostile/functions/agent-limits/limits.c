/*
 * A function that tries to change its agent's (PID 1's) limits, priority and scheduling, which later
 * invocations in the same container would inherit, and reports what it sees of its own. QUERY_STRING
 * picks: "attack" tries each change on pid 1 (and, as controls, on itself) and prints what the kernel
 * answered; "report" prints this process's limits, nice value, CPUs and scheduling policy, and its
 * container (from its cgroup). The hostile suite compiles it (gcc -static) before the gateway starts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

static void answer(const char *name, long result) {
  printf("%s: %s\n", name, result == 0 ? "allowed" : strerror(errno));
}

static long set_limit(pid_t pid, int resource, rlim_t value) {
  struct rlimit limit = {value, value};
  return prlimit(pid, resource, &limit, NULL);
}

static void attack(void) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  struct sched_param param = {0};
  answer("prlimit(1, NOFILE, 40)", set_limit(1, RLIMIT_NOFILE, 40));
  answer("prlimit(1, NPROC, 1)", set_limit(1, RLIMIT_NPROC, 1));
  answer("setpriority(PROCESS, 1, 19)", setpriority(PRIO_PROCESS, 1, 19));
  answer("setpriority(PGRP, 1, 19)", setpriority(PRIO_PGRP, 1, 19));
  answer("setpriority(USER, 0, 19)", setpriority(PRIO_USER, 0, 19));
  answer("sched_setscheduler(1, IDLE)", sched_setscheduler(1, SCHED_IDLE, &param));
  answer("ioprio_set(PROCESS, 1, idle)", syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 1, 3 << 13 /* IOPRIO_CLASS_IDLE */));
  answer("ioprio_set(USER, 0, idle)", syscall(SYS_ioprio_set, 3 /* IOPRIO_WHO_USER */, 0, 3 << 13));
  answer("sched_setaffinity(1, cpu0)", sched_setaffinity(1, sizeof one, &one));
  /* Controls: a process may still change its own. */
  answer("self: prlimit(0, NOFILE, 512)", set_limit(0, RLIMIT_NOFILE, 512));
  answer("self: setpriority(PROCESS, 0, 5)", setpriority(PRIO_PROCESS, 0, 5));
  answer("self: sched_setaffinity(0, cpu0)", sched_setaffinity(0, sizeof one, &one));
}

static void report(void) {
  struct rlimit nofile, nproc;
  getrlimit(RLIMIT_NOFILE, &nofile);
  getrlimit(RLIMIT_NPROC, &nproc);
  cpu_set_t cpus;
  sched_getaffinity(0, sizeof cpus, &cpus);
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  printf("nofile: %lu\nnproc: %lu\nnice: %d\ncpus: %d\npolicy: %d\n", (unsigned long)nofile.rlim_cur, (unsigned long)nproc.rlim_cur, nice,
         CPU_COUNT(&cpus), sched_getscheduler(0));
  FILE *cgroup = fopen("/proc/self/cgroup", "r");
  char line[512];
  while (cgroup && fgets(line, sizeof line, cgroup)) {
    char *id = strstr(line, "libpod-");
    if (id && strstr(line, ":pids:")) printf("container: %.*s\n", 64, id + 7);
  }
}

int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  const char *mode = getenv("QUERY_STRING");
  if (mode && strcmp(mode, "attack") == 0) attack();
  else report();
  return 0;
}
