/*
 * actions.h - the whitelist: every action asr may ever take, in one table (src/execute/actions.c).
 *
 * A plan (strategy stage) and a playbook's steps are lists of (action name, arguments). Nothing
 * else can be executed: a step naming an action that is not in this table, or whose arguments do
 * not pass the action's validator, is refused before anything runs - whether it came from an
 * operator's playbook, from history or from an LLM. Arguments are a JSON object (jansson).
 *
 * The actions (issue 5 adds run and undo to each entry; today the table validates):
 *   restart   {}                         restart the serving slot of the service
 *   rollback  {}                         cut over to the last good release (no rebuild)
 *   patch     {"edits": [{"path", "search", "replace"}, ...], "message"?}
 *                                        commit search/replace edits to the service's repo,
 *                                        then build, test and deploy them blue/green; every path
 *                                        must lie inside the service's policy.patch_paths
 *   escalate  {"reason"}                 stop and hand the incident to a person
 */
#ifndef ASR_EXECUTE_ACTIONS_H
#define ASR_EXECUTE_ACTIONS_H

#include "asr/config.h"
#include "asr/error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define ASR_ACTION_MAX_EDITS 32 /* as many as one edit reply may hold (strategy/edits.h) */
#define ASR_ACTION_MAX_PATH 512
#define ASR_ACTION_MAX_SEGMENTS 32
#define ASR_ACTION_MAX_TEXT (64 * 1024) /* bytes of one search or replace text */

struct asr_action {
    const char *name;
    const char *summary; /* one line for people */
    /* Checks args (a JSON object, never NULL). svc may be NULL when no service is known yet
     * (a playbook loaded without one): then service-specific checks (patch_paths) are left for
     * the plan. Returns 0 or ASR_EINVAL with err naming the argument and the reason. */
    int (*validate)(const json_t *args, const struct asr_service_cfg *svc, struct asr_err *err);
    int timeout_ms; /* how long the action may take when it runs (issue 5) */
};

/* The action called name, or NULL when it is not on the whitelist. */
const struct asr_action *asr_action_find(const char *name);
/* The whole table, for listings; *n gets its length. */
const struct asr_action *asr_actions(size_t *n);
/* asr_action_find + validate, with one error message naming the action:
 * "action 'reboot' is not on the whitelist (restart, rollback, patch, deploy, notify, escalate)" or
 * "action patch: edits[2].path: '../etc/passwd' is outside the service's patch_paths". */
int asr_action_check(const char *name, const json_t *args, const struct asr_service_cfg *svc,
                     struct asr_err *err);
/* Whether a relative path lies inside one of the globs ('*' within a segment, '**' across
 * segments); false for absolute paths, empty, '.', '..' or '.git' (any case) components,
 * characters other than ASCII letters, digits and . _ - + @ , = /, more than
 * ASR_ACTION_MAX_SEGMENTS components or ASR_ACTION_MAX_PATH bytes. */
bool asr_path_allowed(const char *path, const asr_argv globs);

#endif
