/* SPDX-License-Identifier: Apache-2.0 */
/* The default region path: the one place that decides it, used by the
 * library and by the gpucap command, so both name the same file.
 *
 * Root, and any process in a container, uses /tmp/cudevshr.cache (the path
 * HAMi-core users know; a container has a /tmp of its own). A non-root user
 * outside a container gets a private region, /tmp/gpucap-<uid>/cudevshr.cache
 * in a directory of mode 0700 that must be the user's own: on a shared host
 * the users' processes must neither share one region nor be able to squat
 * another user's.
 *
 * "In a container" is any of: a PID namespace other than the initial one
 * (/proc/self/ns/pid), /.dockerenv (Docker), /run/.containerenv (Podman,
 * CRI-O), KUBERNETES_SERVICE_HOST (every Kubernetes pod), the "container"
 * variable (systemd-nspawn, LXC, Podman), or /usr/local/vgpu (HAMi's mount).
 * A wrong guess either way is harmless: the region is still one file per
 * user or per container.
 *
 * Only the default: an explicit GPUCAP_REGION or
 * CUDA_DEVICE_MEMORY_SHARED_CACHE is used as given.
 */
#ifndef GPUCAP_COMMON_DEFAULT_PATHS_H
#define GPUCAP_COMMON_DEFAULT_PATHS_H

#include <stdbool.h>
#include <stddef.h>

/* The default's file name; for root and containers it lies in /tmp, for a
 * non-root user outside a container in /tmp/gpucap-<uid>/. */
#define GPUCAP_REGION_FILE_NAME "cudevshr.cache"
/* For help texts. */
#define GPUCAP_DEFAULT_REGION_HELP "/tmp/cudevshr.cache (/tmp/gpucap-UID/ if neither root nor in a container)"

/* Whether this process runs in a container, by the rules above. */
bool gpucap_in_container(void);

/*
 * Write the default region path into buf. With create_dir, a private
 * default's directory is created (mode 0700) when missing, as the library
 * does before it creates the region; without it nothing is touched (the
 * gpucap command only looks). Either way an existing private directory is
 * checked: a real directory, owned by this user, closed to others.
 * Returns true when the path is usable; false with one line in err naming
 * the directory and the fix, without a prefix (buf still holds the path).
 */
bool gpucap_default_region_path(char *buf, size_t len, bool create_dir, char *err, size_t err_len);

/* Whether HAMi's lock directory (/tmp/vgpulock, which its device plugin
 * mounts into every container it gives a GPU) is a directory here: the
 * node directory by default (src/policy decides; this only looks). */
bool gpucap_hami_node_dir_present(void);

/* The rule itself, for tests: as above for a given user, container verdict
 * and temporary directory (tmp_dir is "/tmp" in gpucap_default_region_path). */
bool gpucap_region_path_for(const char *tmp_dir, unsigned uid, bool in_container, bool create_dir, char *buf,
                            size_t len, char *err, size_t err_len);

#endif
