/*
 * edits.h - search/replace edits: parsed from an LLM reply (or built from a playbook's patch
 * step), checked against the service's patch_paths, and applied to a release checkout.
 *
 * Place in the pipeline: the planner (strategy) asks the LLM for a patch; the reply goes through
 * asr_edits_parse() and asr_edits_check_paths() before it may become a patch step of a plan; the
 * executor later commits them in memory (asr-git commit-edits, docs/patching.md), through
 * asr_edits_apply_buffer(), the same code as asr_edits_apply() on a checkout. The model
 * gets no tools: everything it can do is what these three functions accept. docs/edits.md is the
 * reference for the format and for what is refused and why.
 *
 * THE FORMAT (asr_edits_parse). The reply is read line by line; a line ends at "\n" and one "\r"
 * before it is dropped (CRLF replies read as LF). An edit block is
 *
 *     src/handler.c                     <- the path, alone on its line
 *     ```c                              <- optional fence line (may also come before the path)
 *     <<<<<<< SEARCH
 *     ...exact lines of the file...
 *     =======
 *     ...lines that replace them...
 *     >>>>>>> REPLACE
 *     ```
 *
 *  - Markers are exactly "<<<<<<< SEARCH", "=======" and ">>>>>>> REPLACE" at the start of a
 *    line (seven characters each), optionally followed by spaces or tabs. Indented marker-like
 *    lines are ordinary content.
 *  - The path is the line just before "<<<<<<< SEARCH", or just before a fence line ("```" plus
 *    an optional language word) that is just before it. It is trimmed of surrounding blanks and
 *    one pair of backticks, and must not contain blanks. Its safety is checked later by
 *    asr_edits_check_paths(), not here.
 *  - SEARCH and REPLACE are whole lines: each line of the block contributes its text plus "\n".
 *  - An empty SEARCH creates a new file whose content is REPLACE (the file must not exist when
 *    the edits are applied). A block with both parts empty is refused.
 *  - Anything outside blocks (minus path and fence lines) is the rationale.
 *  - Refused with ASR_EPARSE: a marker out of order (a "=======" or ">>>>>>> REPLACE" outside a
 *    block, "<<<<<<< SEARCH" inside one, a second "======="), a block left open at the end, a
 *    missing path, a NUL byte, no edits at all, and blocks mixed with a unified diff. Consequence:
 *    a file line that is exactly "=======" cannot be part of a SEARCH or REPLACE.
 *  - Fallback: a reply without SEARCH blocks may be a unified diff ("--- a/x", "+++ b/x",
 *    "@@ -l,c +l,c @@" hunks, optionally fenced, "diff --git"/"index" lines skipped). Each hunk
 *    becomes one edit: context and removed lines are SEARCH, context and added lines REPLACE. The
 *    line numbers of the hunk header are not used (edits are found by content) but its counts
 *    must agree with the hunk's lines. "--- /dev/null" creates a file; deleting (+++ /dev/null)
 *    and renaming are refused, as is a hunk with neither context nor removed lines.
 *  - Caps: more than ASR_EDITS_MAX_REPLY bytes of reply, ASR_EDITS_MAX_BLOCKS edits or
 *    ASR_EDITS_MAX_TEXT bytes in one SEARCH or REPLACE -> ASR_ETOOBIG. The rationale is kept to
 *    ASR_EDITS_MAX_RATIONALE bytes and cut visibly with " [...]".
 *
 * Every error message is one line that starts with "edits: " and names the block (or edit)
 * number, the reply line and what was wrong; quoted outside text is cut short and has its
 * control characters replaced.
 */
#ifndef ASR_STRATEGY_EDITS_H
#define ASR_STRATEGY_EDITS_H

#include "asr/config.h"
#include "asr/error.h"

#include <stdbool.h>
#include <stddef.h>

#define ASR_EDITS_MAX_REPLY (256u * 1024u)      /* bytes of reply parsed */
#define ASR_EDITS_MAX_BLOCKS 32                 /* edits in one reply or patch step */
#define ASR_EDITS_MAX_TEXT (64u * 1024u)        /* bytes of one SEARCH or one REPLACE */
#define ASR_EDITS_MAX_RATIONALE 4096u           /* bytes of rationale kept */
#define ASR_EDITS_MAX_PATH 512u                 /* bytes of one path */
#define ASR_EDITS_MAX_SEGMENTS 32               /* components of one path */
#define ASR_EDITS_MAX_FILE (8u * 1024u * 1024u) /* bytes of a file edited (before and after) */

enum asr_edits_format {
    ASR_EDITS_BLOCKS = 1, /* SEARCH/REPLACE blocks */
    ASR_EDITS_DIFF = 2,   /* the unified-diff fallback */
};

/* One edit. search/replace are NUL-terminated (the NUL is not counted) and use "\n" line ends;
 * search_len == 0 means "create path with replace as its content". */
struct asr_edit {
    char *path;
    char *search;
    size_t search_len;
    char *replace;
    size_t replace_len;
    int line; /* line of the reply (or playbook) where the edit starts, 1-based */
};

/* The edits of one reply, in order; the object owns every string. */
struct asr_edits {
    struct asr_edit *v;
    size_t n;
    char *rationale; /* never NULL after a successful parse; "" when the reply had none */
    int format;      /* enum asr_edits_format; 0 for edits built with asr_edits_add() */
};

/*
 * Parses an LLM reply of len bytes (see THE FORMAT above). On success returns 0 and *out owns the
 * edits (free with asr_edits_free). On failure *out is left empty (zeroed) and the code is
 * ASR_EPARSE (malformed), ASR_ETOOBIG (a cap) or ASR_ENOMEM, with err naming the block and line.
 */
int asr_edits_parse(const char *text, size_t len, struct asr_edits *out, struct asr_err *err);

/*
 * Appends one edit built by the caller (a playbook's patch step) under the same rules as parsed
 * ones: search and replace are copied, CRLF line ends become LF, a non-empty text that does not
 * end in "\n" gets one, NUL bytes, both texts empty, and the caps are refused. e must be zeroed
 * or hold earlier edits. Returns 0, ASR_EPARSE, ASR_ETOOBIG or ASR_ENOMEM (e unchanged then).
 */
int asr_edits_add(struct asr_edits *e, const char *path, const char *search, size_t search_len,
                  const char *replace, size_t replace_len, int line, struct asr_err *err);

/*
 * Checks that every path is safe and allowed: relative, at most ASR_EDITS_MAX_PATH bytes and
 * ASR_EDITS_MAX_SEGMENTS components, made only of ASCII letters, digits and . _ - + @ , = and "/"
 * between components (so no "%", "\", blanks, control characters or non-ASCII lookalikes), no
 * empty, "." or ".." component, no ".git" component (any case), and matching at least one of the
 * NULL-terminated patch_paths globs as asr_path_allowed() (execute/actions.h) matches them: "*"
 * and "?" within a component, a "**" component across components (so src followed by a "**"
 * component is everything below src, not src itself). Returns 0 or ASR_EINVAL with err naming
 * the edit, the path and why; an empty patch_paths refuses every edit.
 */
int asr_edits_check_paths(const struct asr_edits *e, const asr_argv patch_paths,
                          struct asr_err *err);

/*
 * Applies the edits of e that name path, in order, to one file's content: the core of every way
 * edits are applied (asr_edits_apply and asr_edits_check on a tree on disk, and asr-git's
 * in-memory commit, src/execute/git.c), so all of them give the same verdicts.
 *
 * content[0..len) is the file as it is (NULL: the file does not exist, so the first edit of it
 * must create it). Each SEARCH must occur exactly once, starting at the beginning of a line (an
 * edit sees the earlier edits' result). When it does not occur at all, the whitespace-tolerant
 * match is tried: the one place where SEARCH's lines equal as many consecutive lines of the file
 * once each line, on both sides, has lost its leading and trailing blanks (space, tab; and the
 * CR of CRLF) and has every inner run of blanks counted as one; those whole lines are replaced.
 * It too must be unique, every line must be equal but for blanks, and blank lines count: never a
 * fuzzy match. A file whose first line ends in "\r\n" gets its edits' line ends as "\r\n"; a
 * file without a final newline is matched as if it had one, and keeps lacking it.
 *
 * Text only: a content with a NUL byte (a binary file), or a result with a NUL byte or invalid
 * UTF-8, is refused. Neither the content nor the result may exceed ASR_EDITS_MAX_FILE bytes.
 *
 * On success *out is the new content (NUL-terminated, not counted in *out_len; caller frees).
 * Returns 0, ASR_EINVAL (a SEARCH found 0 times or several times, exactly or with whitespace
 * ignored, with the lines; a create of an existing file; not text; no edit names path),
 * ASR_ENOENT (an edit of a missing file), ASR_ETOOBIG or ASR_ENOMEM; *out is NULL then.
 */
int asr_edits_apply_buffer(const struct asr_edits *e, const char *path, const char *content,
                           size_t len, char **out, size_t *out_len, struct asr_err *err);

/*
 * Applies the edits, in order, to the tree at root (a release checkout). All or nothing: every
 * file is read once and its edits are applied in memory with asr_edits_apply_buffer (see there
 * for matching, line ends and the text-only rule), and only when all succeed are files written,
 * each through a temp file in its directory, fsync and rename, keeping the file's permission
 * bits. If a write fails, the files already written are put back (best effort) and the error
 * names the file.
 *
 * Paths are opened one component at a time from root with O_NOFOLLOW, so a symlink anywhere in
 * a path is refused, as are non-regular files and files over ASR_EDITS_MAX_FILE. A create needs
 * an existing parent directory and no file.
 *
 * Returns 0, ASR_EINVAL (a path, a SEARCH found 0 or several times, a create of an existing file,
 * not text), ASR_ENOENT (no such file or directory), ASR_ETOOBIG, ASR_EIO or ASR_ENOMEM.
 */
int asr_edits_apply(const struct asr_edits *e, const char *root, struct asr_err *err);

/* asr_edits_apply without writing anything: whether every edit would apply to the tree at root
 * as it is now (each SEARCH found exactly once, after the earlier edits). Same errors. */
int asr_edits_check(const struct asr_edits *e, const char *root, struct asr_err *err);

/* Frees everything the edits own and zeroes the struct; accepts NULL and a zeroed struct. */
void asr_edits_free(struct asr_edits *e);

#endif
