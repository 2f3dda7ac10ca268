/* inflight.c - requests in flight across processes (inflight.h). */
#include "inflight.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SLOTS 512

struct slot {
	int32_t pid;
	int32_t count;
};

static struct slot local_slot;                 /* without the file */
static struct slot *slots;                     /* the mapped file, or NULL */
static struct slot *mine = &local_slot;
static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int initialized;

static int pid_alive(int32_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

static struct slot *claim(struct slot *v, int32_t me)
{
	for (int i = 0; i < SLOTS; i++) {
		int32_t p = __atomic_load_n(&v[i].pid, __ATOMIC_ACQUIRE);
		if (p == me)
			return &v[i];
		if (p != 0 && pid_alive(p))
			continue;
		if (__atomic_compare_exchange_n(&v[i].pid, &p, me, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE)) {
			__atomic_store_n(&v[i].count, 0, __ATOMIC_RELEASE);
			return &v[i];
		}
	}
	return NULL;
}

void inflight_init(const char *db_path)
{
	if (__atomic_load_n(&initialized, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&init_lock);
	if (initialized || !db_path) {
		pthread_mutex_unlock(&init_lock);
		return;
	}
	char path[4096];
	int fd = -1;
	if (snprintf(path, sizeof(path), "%s.inflight", db_path) < (int)sizeof(path))
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	size_t size = SLOTS * sizeof(struct slot);
	struct stat sb;
	if (fd >= 0 && fstat(fd, &sb) == 0 && (sb.st_size >= (off_t)size || ftruncate(fd, (off_t)size) == 0)) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			struct slot *s = claim(p, (int32_t)getpid());
			if (s) {
				slots = p;
				/* Requests that started before the mapping move over. */
				__atomic_add_fetch(&s->count, __atomic_exchange_n(&local_slot.count, 0,
										  __ATOMIC_ACQ_REL),
						   __ATOMIC_ACQ_REL);
				__atomic_store_n(&mine, s, __ATOMIC_RELEASE);
			} else {
				munmap(p, size);
			}
		}
	}
	if (fd >= 0)
		close(fd);
	__atomic_store_n(&initialized, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&init_lock);
}

void inflight_enter(void)
{
	__atomic_add_fetch(&__atomic_load_n(&mine, __ATOMIC_ACQUIRE)->count, 1, __ATOMIC_ACQ_REL);
}

void inflight_leave(void)
{
	__atomic_sub_fetch(&__atomic_load_n(&mine, __ATOMIC_ACQUIRE)->count, 1, __ATOMIC_ACQ_REL);
}

long inflight_total(void)
{
	if (!slots)
		return __atomic_load_n(&local_slot.count, __ATOMIC_ACQUIRE);
	long total = 0;
	int32_t me = (int32_t)getpid();
	for (int i = 0; i < SLOTS; i++) {
		int32_t p = __atomic_load_n(&slots[i].pid, __ATOMIC_ACQUIRE);
		int32_t c = __atomic_load_n(&slots[i].count, __ATOMIC_ACQUIRE);
		if (p != 0 && c > 0 && (p == me || pid_alive(p)))
			total += c;
	}
	return total;
}
