/* powercut.so: an LD_PRELOAD shim that makes a SIGKILL look like a power cut to the files under one folder.
 *
 * A power cut loses every write the kernel had not yet put on the disk: everything written to a file since that
 * file's last fsync/fdatasync. A SIGKILL alone loses nothing the process had written (the kernel keeps its page
 * cache). So for each regular file opened under $POWERCUT_DIR (except SQLite's -shm, which is shared memory, not
 * storage), this shim logs every write and truncate to $POWERCUT_LOG before doing it: the bytes it replaces (the
 * pre-image), the bytes it writes and the old file size. After each fsync/fdatasync it logs a SYNC record naming
 * the file and how many records came before the fsync began: those are on the disk. After the SIGKILL,
 * tests/helpers/powercut.py reads the log and undoes, newest first, every write not covered by a later SYNC of
 * its file, then replays a random subset of them in order (a disk may have kept some, in any order), which is the
 * file as the disk could hold it after the cut.
 *
 * Built at test time: gcc -shared -fPIC -O2 -o powercut.so powercut.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define MAX_FD 4096
#define KIND_WRITE 1u
#define KIND_TRUNCATE 2u
#define KIND_SYNC 3u
#define MAGIC 0x31524350u /* "PCR1" */

struct record_header {
    uint32_t magic;
    uint32_t kind;
    uint32_t path_len;
    uint32_t reserved;
    uint64_t offset;    /* write: where; truncate: the new length; sync: records before the fsync began */
    uint64_t new_len;   /* write: bytes written (they follow the pre-image) */
    uint64_t old_size;  /* the file's size before this change */
    uint64_t old_len;   /* bytes of pre-image that follow the path */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *tracked[MAX_FD];
static int log_fd = -1;
static uint64_t records = 0;
static char dir_prefix[PATH_MAX];
static size_t dir_prefix_len = 0;
static int configured = 0;

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);

static void configure(void) {
    if (configured) return;
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_openat64 = dlsym(RTLD_NEXT, "openat64");
    real_close = dlsym(RTLD_NEXT, "close");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_pread = dlsym(RTLD_NEXT, "pread");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    const char *dir = getenv("POWERCUT_DIR");
    const char *log_path = getenv("POWERCUT_LOG");
    if (dir != NULL && log_path != NULL && realpath(dir, dir_prefix) != NULL) {
        dir_prefix_len = strlen(dir_prefix);
        log_fd = real_open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    }
    configured = 1;
}

static void write_all(const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = real_write(log_fd, p, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            abort(); /* a lost log record would make the test lie: stop loudly */
        }
        p += n;
        len -= (size_t)n;
    }
}

static void log_record(uint32_t kind, const char *path, uint64_t offset, const void *new_data, uint64_t new_len,
                       uint64_t old_size, const void *old_data, uint64_t old_len) {
    struct record_header header = {MAGIC, kind, (uint32_t)strlen(path), 0, offset, new_len, old_size, old_len};
    write_all(&header, sizeof header);
    write_all(path, header.path_len);
    if (old_len) write_all(old_data, old_len);
    if (new_len) write_all(new_data, new_len);
    records++;
}

static void track(int fd, const char *path) {
    configure();
    if (fd < 0 || fd >= MAX_FD || log_fd < 0 || path == NULL) return;
    char resolved[PATH_MAX];
    if (realpath(path, resolved) == NULL) return;
    size_t len = strlen(resolved);
    if (strncmp(resolved, dir_prefix, dir_prefix_len) != 0 || resolved[dir_prefix_len] != '/') return;
    if (len >= 4 && strcmp(resolved + len - 4, "-shm") == 0) return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
    pthread_mutex_lock(&lock);
    free(tracked[fd]);
    tracked[fd] = strdup(resolved);
    pthread_mutex_unlock(&lock);
}

static uint64_t file_size(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* Log a write of len bytes at offset (lock held), with the pre-image of the range it overwrites. */
static void log_write(int fd, const void *buf, size_t len, off_t offset) {
    uint64_t size = file_size(fd);
    uint64_t old_len = (uint64_t)offset < size ? size - (uint64_t)offset : 0;
    if (old_len > len) old_len = len;
    void *old = old_len ? malloc(old_len) : NULL;
    if (old_len) {
        ssize_t got = real_pread(fd, old, old_len, offset);
        old_len = got > 0 ? (uint64_t)got : 0;
    }
    log_record(KIND_WRITE, tracked[fd], (uint64_t)offset, buf, len, size, old, old_len);
    free(old);
}

static int open_common(int fd, const char *path) {
    if (fd >= 0) track(fd, path);
    return fd;
}

int open(const char *path, int flags, ...) {
    configure();
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list args;
        va_start(args, flags);
        mode = va_arg(args, mode_t);
        va_end(args);
    }
    return open_common(real_open(path, flags, mode), path);
}

int open64(const char *path, int flags, ...) {
    configure();
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list args;
        va_start(args, flags);
        mode = va_arg(args, mode_t);
        va_end(args);
    }
    return open_common(real_open64(path, flags, mode), path);
}

int openat(int dirfd, const char *path, int flags, ...) {
    configure();
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list args;
        va_start(args, flags);
        mode = va_arg(args, mode_t);
        va_end(args);
    }
    int fd = real_openat(dirfd, path, flags, mode);
    if (path != NULL && path[0] == '/') open_common(fd, path);
    return fd;
}

int openat64(int dirfd, const char *path, int flags, ...) {
    configure();
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list args;
        va_start(args, flags);
        mode = va_arg(args, mode_t);
        va_end(args);
    }
    int fd = real_openat64(dirfd, path, flags, mode);
    if (path != NULL && path[0] == '/') open_common(fd, path);
    return fd;
}

int close(int fd) {
    configure();
    if (fd >= 0 && fd < MAX_FD && tracked[fd] != NULL) {
        pthread_mutex_lock(&lock);
        free(tracked[fd]);
        tracked[fd] = NULL;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

static ssize_t logged_pwrite(ssize_t (*real)(int, const void *, size_t, off_t), int fd, const void *buf, size_t len,
                             off_t offset) {
    configure();
    if (fd < 0 || fd >= MAX_FD || tracked[fd] == NULL) return real(fd, buf, len, offset);
    pthread_mutex_lock(&lock);
    log_write(fd, buf, len, offset);
    ssize_t result = real(fd, buf, len, offset);
    pthread_mutex_unlock(&lock);
    return result;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t offset) {
    return logged_pwrite(real_pwrite, fd, buf, len, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t offset) {
    configure();
    return logged_pwrite(real_pwrite64 ? real_pwrite64 : real_pwrite, fd, buf, len, offset);
}

ssize_t write(int fd, const void *buf, size_t len) {
    configure();
    if (fd < 0 || fd >= MAX_FD || tracked[fd] == NULL) return real_write(fd, buf, len);
    pthread_mutex_lock(&lock);
    off_t offset = lseek(fd, 0, SEEK_CUR);
    log_write(fd, buf, len, offset);
    ssize_t result = real_write(fd, buf, len);
    pthread_mutex_unlock(&lock);
    return result;
}

static int logged_truncate(int (*real)(int, off_t), int fd, off_t length) {
    configure();
    if (fd < 0 || fd >= MAX_FD || tracked[fd] == NULL) return real(fd, length);
    pthread_mutex_lock(&lock);
    uint64_t size = file_size(fd);
    uint64_t old_len = size > (uint64_t)length ? size - (uint64_t)length : 0;
    void *old = old_len ? malloc(old_len) : NULL;
    if (old_len) {
        ssize_t got = real_pread(fd, old, old_len, length);
        old_len = got > 0 ? (uint64_t)got : 0;
    }
    log_record(KIND_TRUNCATE, tracked[fd], (uint64_t)length, NULL, 0, size, old, old_len);
    free(old);
    int result = real(fd, length);
    pthread_mutex_unlock(&lock);
    return result;
}

int ftruncate(int fd, off_t length) { return logged_truncate(real_ftruncate, fd, length); }

int ftruncate64(int fd, off_t length) {
    configure();
    return logged_truncate(real_ftruncate64 ? real_ftruncate64 : real_ftruncate, fd, length);
}

static int logged_sync(int (*real)(int), int fd) {
    configure();
    if (fd < 0 || fd >= MAX_FD || tracked[fd] == NULL) return real(fd);
    pthread_mutex_lock(&lock);
    uint64_t before = records; /* every record so far is in the kernel; this fsync makes them durable */
    char *path = strdup(tracked[fd]);
    pthread_mutex_unlock(&lock);
    int result = real(fd);
    if (result == 0) {
        pthread_mutex_lock(&lock);
        log_record(KIND_SYNC, path, before, NULL, 0, 0, NULL, 0);
        pthread_mutex_unlock(&lock);
    }
    free(path);
    return result;
}

int fsync(int fd) { return logged_sync(real_fsync, fd); }

int fdatasync(int fd) { return logged_sync(real_fdatasync, fd); }
