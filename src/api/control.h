/*
 * control.h - the daemon's local control socket, `<state_dir>/asr.sock` (API stage).
 *
 * CLI commands (`asr status`, `asr deploy`, `asr rollback`) reach a running daemon here. The
 * protocol is one JSON request line per connection, answered by zero or more progress lines
 * `{"progress":"..."}` and one final line `{"ok":true,...}` or `{"ok":false,"error":"..."}`.
 * The socket is created mode 0600 inside the state dir (0700): only its owner can talk to it.
 */
#ifndef ASR_API_CONTROL_H
#define ASR_API_CONTROL_H

#include "asr/error.h"

#include <jansson.h>
#include <uv.h>

#define ASR_CONTROL_SOCKET "asr.sock"
#define ASR_CONTROL_MAX_REQUEST (64 * 1024)

struct asr_control;
struct asr_control_conn;

/* Handles one request. Answer with asr_control_reply (now or later, from any callback). */
typedef void (*asr_control_handler)(struct asr_control_conn *conn, json_t *request, void *data);

int asr_control_listen(uv_loop_t *loop, const char *state_dir, asr_control_handler handler,
                       void *data, struct asr_control **out, struct asr_err *err);
/* Closes the listener and removes the socket file; open connections finish their replies. */
void asr_control_close(struct asr_control *ctl);

/* Sends a progress line; a no-op if the client has gone. */
void asr_control_progress(struct asr_control_conn *conn, const char *msg);
/* Sends the final reply (stolen reference; "ok" is added if missing) and closes the connection. */
void asr_control_reply(struct asr_control_conn *conn, json_t *reply);
/* Final error reply. */
void asr_control_reply_error(struct asr_control_conn *conn, const char *msg);

/*
 * Client side: sends request to the daemon of state_dir and waits for the final line. Progress
 * lines are passed to on_progress (may be NULL). Returns 0 with *reply (caller decrefs),
 * ASR_ENODAEMON when no daemon listens there, or ASR_EPROTO/ASR_EIO.
 */
int asr_control_call(const char *state_dir, json_t *request, void (*on_progress)(const char *msg),
                     json_t **reply, struct asr_err *err);

/*
 * The operator's API (api/api.h) over the socket: sends {"method", "path", "body"} (body stolen,
 * may be NULL) and returns the answer's body in *out, with "ok" (a 2xx status) and "status"
 * added. Returns 0, ASR_ENODAEMON when no daemon listens, or ASR_EPROTO/ASR_EIO.
 */
int asr_control_api(const char *state_dir, const char *method, const char *path, json_t *body,
                    void (*on_progress)(const char *msg), json_t **out, struct asr_err *err);

#endif
