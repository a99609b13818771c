/* Reverses the order in which readdir() returns a directory's entries:
 * what `comb check --vary directory_order` preloads into a rebuild, so a
 * build whose output depends on directory order shows it (as disorderfs
 * does, without FUSE). Each directory is read whole on its first
 * readdir() and served back to front. */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct listing {
    DIR *dir;
    struct dirent64 *entries;
    size_t count, next;
    struct listing *link;
};

static struct listing *listings;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static struct listing *find(DIR *dir)
{
    for (struct listing *l = listings; l; l = l->link)
        if (l->dir == dir)
            return l;
    return NULL;
}

static struct listing *load(DIR *dir)
{
    struct listing *l = find(dir);
    if (l)
        return l;
    struct dirent64 *(*real)(DIR *) = dlsym(RTLD_NEXT, "readdir64");
    l = calloc(1, sizeof *l);
    if (!l || !real)
        return NULL;
    l->dir = dir;
    size_t cap = 0;
    struct dirent64 *e;
    while ((e = real(dir)) != NULL) {
        if (l->count == cap) {
            cap = cap ? cap * 2 : 32;
            struct dirent64 *grown = realloc(l->entries, cap * sizeof *grown);
            if (!grown)
                break;
            l->entries = grown;
        }
        struct dirent64 *copy = &l->entries[l->count++];
        size_t n = e->d_reclen < sizeof *copy ? e->d_reclen : sizeof *copy;
        memset(copy, 0, sizeof *copy);
        memcpy(copy, e, n);
        copy->d_name[sizeof copy->d_name - 1] = '\0';
    }
    for (size_t i = 0; i < l->count / 2; i++) {
        struct dirent64 t = l->entries[i];
        l->entries[i] = l->entries[l->count - 1 - i];
        l->entries[l->count - 1 - i] = t;
    }
    l->link = listings;
    listings = l;
    return l;
}

struct dirent64 *readdir64(DIR *dir)
{
    pthread_mutex_lock(&lock);
    struct listing *l = load(dir);
    struct dirent64 *e = l && l->next < l->count ? &l->entries[l->next++] : NULL;
    pthread_mutex_unlock(&lock);
    return e;
}

/* On 64-bit glibc, struct dirent and struct dirent64 are the same. */
struct dirent *readdir(DIR *dir)
{
    return (struct dirent *)readdir64(dir);
}

void rewinddir(DIR *dir)
{
    pthread_mutex_lock(&lock);
    struct listing *l = find(dir);
    if (l)
        l->next = 0;
    pthread_mutex_unlock(&lock);
    void (*real)(DIR *) = dlsym(RTLD_NEXT, "rewinddir");
    if (real)
        real(dir);
}

int closedir(DIR *dir)
{
    pthread_mutex_lock(&lock);
    for (struct listing **p = &listings; *p; p = &(*p)->link) {
        if ((*p)->dir == dir) {
            struct listing *gone = *p;
            *p = gone->link;
            free(gone->entries);
            free(gone);
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    int (*real)(DIR *) = dlsym(RTLD_NEXT, "closedir");
    return real ? real(dir) : -1;
}
