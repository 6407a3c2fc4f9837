/*
 * Named network namespaces, compatible with ip-netns(8): a namespace called
 * NAME is kept alive by a bind mount of its nsfs inode on /run/netns/NAME.
 * Work inside a namespace runs on a short-lived thread that joins it, so the
 * caller's own thread (and its netlink sockets) never change namespace.
 */
#ifndef DRAFTER_NET_NETNS_H
#define DRAFTER_NET_NETNS_H

#include <stdbool.h>
#include <stddef.h>

#define NETNS_RUN_DIR "/run/netns"

/* Create /run/netns/NAME with a fresh namespace; -EEXIST if it exists. */
int netns_create(const char *name);
/* Remove /run/netns/NAME; 0 when there was none. */
int netns_delete(const char *name);
bool netns_exists(const char *name);
/* An O_CLOEXEC descriptor of the namespace, or -errno (-ENOENT: no such namespace). */
int netns_open(const char *name);
/* Names in /run/netns starting with PREFIX, followed by digits only. */
int netns_list_numbered(const char *prefix, char ***names, size_t *n);
void netns_names_free(char **names, size_t n);

/* Run FN(ARG) on a thread inside the namespace NSFD; returns FN's result. */
int netns_run(int nsfd, int (*fn)(void *arg), void *arg);

/* Read or write a /proc/sys file in the calling thread's namespace. */
int net_sysctl_read(const char *path, char *buf, size_t len);
int net_sysctl_write(const char *path, const char *value);

#endif
