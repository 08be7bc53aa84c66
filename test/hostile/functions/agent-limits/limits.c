/*
 * A function that changes what its agent (PID 1) passes on to the processes it starts: its limits,
 * priority, scheduling, I/O priority or CPUs. The kernel allows each (the function runs as the agent's
 * uid). QUERY_STRING picks: "attack=<change>" makes one change, on pid 1 or on the whole uid, and prints
 * what the kernel answered; "attack=self" changes this process's own; "report" prints this process's
 * limits, nice value, scheduling, I/O priority and CPUs, all inherited from the agent, and its
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

#define IOPRIO_IDLE (3 << 13)

static void answer(const char *name, long result) {
  printf("%s: %s\n", name, result == 0 ? "allowed" : strerror(errno));
}

static long set_limit(pid_t pid, int resource, rlim_t value) {
  struct rlimit limit = {value, value};
  return prlimit(pid, resource, &limit, NULL);
}

static void attack(const char *change) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(0, &one);
  struct sched_param param = {0};
  if (!strcmp(change, "nofile")) answer("prlimit(1, NOFILE, 40)", set_limit(1, RLIMIT_NOFILE, 40));
  else if (!strcmp(change, "nproc")) answer("prlimit(1, NPROC, 1)", set_limit(1, RLIMIT_NPROC, 1));
  else if (!strcmp(change, "nice")) answer("setpriority(PROCESS, 1, 19)", setpriority(PRIO_PROCESS, 1, 19));
  else if (!strcmp(change, "pgrp-nice")) answer("setpriority(PGRP, 1, 19)", setpriority(PRIO_PGRP, 1, 19));
  else if (!strcmp(change, "user-nice")) answer("setpriority(USER, 0, 19)", setpriority(PRIO_USER, 0, 19));
  else if (!strcmp(change, "idle")) answer("sched_setscheduler(1, IDLE)", sched_setscheduler(1, SCHED_IDLE, &param));
  else if (!strcmp(change, "ioprio")) answer("ioprio_set(PROCESS, 1, idle)", syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 1, IOPRIO_IDLE));
  else if (!strcmp(change, "user-ioprio")) answer("ioprio_set(USER, 0, idle)", syscall(SYS_ioprio_set, 3 /* IOPRIO_WHO_USER */, getuid(), IOPRIO_IDLE));
  else if (!strcmp(change, "affinity")) answer("sched_setaffinity(1, cpu0)", sched_setaffinity(1, sizeof one, &one));
  else if (!strcmp(change, "self")) {
    answer("prlimit(0, NOFILE, 512)", set_limit(0, RLIMIT_NOFILE, 512));
    answer("setpriority(PROCESS, 0, 19)", setpriority(PRIO_PROCESS, 0, 19));
    answer("sched_setaffinity(0, cpu0)", sched_setaffinity(0, sizeof one, &one));
  }
}

static void report(void) {
  struct rlimit nofile, nproc;
  getrlimit(RLIMIT_NOFILE, &nofile);
  getrlimit(RLIMIT_NPROC, &nproc);
  cpu_set_t cpus;
  sched_getaffinity(0, sizeof cpus, &cpus);
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  printf("nofile: %lu\nnproc: %lu\nnice: %d\ncpus: %d\npolicy: %d\nioprio: %ld\n", (unsigned long)nofile.rlim_cur, (unsigned long)nproc.rlim_cur, nice,
         CPU_COUNT(&cpus), sched_getscheduler(0), syscall(SYS_ioprio_get, 1, 0));
  FILE *cgroup = fopen("/proc/self/cgroup", "r");
  char line[512];
  while (cgroup && fgets(line, sizeof line, cgroup)) {
    char *id = strstr(line, "libpod-");
    if (id && strstr(line, ":pids:")) printf("container: %.*s\n", 64, id + 7);
  }
}

int main(void) {
  setvbuf(stdout, 0, _IONBF, 0);
  const char *query = getenv("QUERY_STRING");
  if (query && strncmp(query, "attack=", 7) == 0) attack(query + 7);
  else report();
  return 0;
}
