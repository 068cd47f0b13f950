/*
 * assets.h - the dashboard's files, embedded in the binary at build time (cmake/embed.cmake turns
 * every file of src/api/dashboard/ into a byte array). The HTTP server serves index.html at / and
 * the others at /assets/NAME.
 */
#ifndef ASR_API_ASSETS_H
#define ASR_API_ASSETS_H

#include <stddef.h>

struct asr_asset {
    const char *name; /* file name, e.g. "app.js"; NULL ends the table */
    const char *content_type;
    const unsigned char *data;
    size_t len;
};

extern const struct asr_asset asr_assets[];

/* The asset called name, or NULL. */
const struct asr_asset *asr_asset_find(const char *name);

#endif
