/* libgreet: greetings in several languages. */
#ifndef GREET_H
#define GREET_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The greeting of language LANG ("en", "fr", ...), or NULL if unknown. */
const char *greet_phrase(const char *lang);

/* How many languages there are, and the code of the I-th one. */
size_t greet_count(void);
const char *greet_language(size_t i);

/* Writes "GREETING, NAME!" into BUF (at most SIZE bytes, terminated).
   Returns the length it needed, like snprintf, or -1 for an unknown LANG. */
int greet_format(char *buf, size_t size, const char *lang, const char *name);

#ifdef __cplusplus
}
#endif

#endif
