#include "greet.h"

#include <stdio.h>
#include <string.h>

/* table.h is generated from greet-data's greetings.txt by the Makefile. */
struct entry {
    const char *lang;
    const char *phrase;
};

static const struct entry table[] = {
#include "table.h"
};

#define COUNT (sizeof table / sizeof table[0])

const char *greet_phrase(const char *lang)
{
    for (size_t i = 0; i < COUNT; i++)
        if (strcmp(table[i].lang, lang) == 0)
            return table[i].phrase;
    return NULL;
}

size_t greet_count(void)
{
    return COUNT;
}

const char *greet_language(size_t i)
{
    return i < COUNT ? table[i].lang : NULL;
}

int greet_format(char *buf, size_t size, const char *lang, const char *name)
{
    const char *phrase = greet_phrase(lang);
    if (phrase == NULL)
        return -1;
    return snprintf(buf, size, "%s, %s!", phrase, name);
}
