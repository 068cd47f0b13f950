/*
 * assets.c - looking up the dashboard's embedded files (assets.h).
 */
#include "api/assets.h"

#include <string.h>

const struct asr_asset *asr_asset_find(const char *name)
{
    for (const struct asr_asset *a = asr_assets; a->name != NULL; a++)
        if (strcmp(a->name, name) == 0)
            return a;
    return NULL;
}
