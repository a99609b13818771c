/* greet: say hello, in one language or all of them, using libgreet. */
#include <greet.h>

#include <stdio.h>
#include <string.h>

static int usage(void)
{
    fputs("usage: greet [-l LANG | --all] [NAME]\n", stderr);
    return 2;
}

static int say(const char *lang, const char *name)
{
    char line[256];
    if (greet_format(line, sizeof line, lang, name) < 0) {
        fprintf(stderr, "greet: no greeting for language %s\n", lang);
        return 1;
    }
    printf("%s\n", line);
    return 0;
}

int main(int argc, char **argv)
{
    const char *lang = "en";
    const char *name = "world";
    int all = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0)
            all = 1;
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc)
            lang = argv[++i];
        else if (argv[i][0] == '-')
            return usage();
        else
            name = argv[i];
    }
    if (!all)
        return say(lang, name);
    for (size_t i = 0; i < greet_count(); i++) {
        printf("%-4s ", greet_language(i));
        say(greet_language(i), name);
    }
    return 0;
}
