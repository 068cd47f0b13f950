/*
 * main.c - the `asr` command: dispatches to the subcommands in src/cli/cmd_*.c.
 */
#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "asr: not built yet\n");
    return 1;
}
