/*
 * main.c - the `asr` command: dispatches to the subcommands (cmd_*.c).
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

static const char USAGE[] =
    "usage: asr COMMAND [options]\n"
    "\n"
    "asr (Autonomous Software Recovery) keeps services up: it builds releases from git, runs\n"
    "them blue/green behind its proxy, health-checks and restarts them, and rolls back.\n"
    "\n"
    "commands:\n"
    "  run -c FILE [--state-dir DIR]      run the daemon in the foreground\n"
    "  status [--json]                    show services, releases, health, restarts\n"
    "  deploy SERVICE [--ref REV]         build, test and cut over to REV (default HEAD)\n"
    "  rollback SERVICE                   cut over to the last good release\n"
    "  config check -c FILE               validate a config file\n"
    "  templates --format FMT [--mask RE]... LOGFILE\n"
    "                                     mine log templates; CSV LineId,ClusterId,EventTemplate\n"
    "  detect -c FILE [LOGFILE|-] [--cloudwatch] [--service NAME]\n"
    "                                     offline detection; incidents as JSON lines\n"
    "  incidents [--json] [--service NAME] [--status open|resolved] [--limit N]\n"
    "                                     list incidents, newest first\n"
    "  incident show ID [--json]          an incident with its context and timeline\n"
    "  incident resolve ID [--reason TEXT]\n"
    "                                     close an incident (its fingerprint cools down)\n"
    "  kb add FILE|DIR | kb list | kb search QUERY [--json]\n"
    "                                     the knowledge base: playbooks and past incidents\n"
    "  plan INCIDENT_ID [--json] [-c FILE] [--replan] [--outcome verified|failed]\n"
    "                                     the remediation plan of an incident\n"
    "  approve INCIDENT_ID | reject INCIDENT_ID [--reason TEXT]\n"
    "                                     decide on a plan that awaits approval\n"
    "  audit verify | audit list [--json] [--limit N]\n"
    "                                     check the audit chain, or show its newest rows\n"
    "  demo [--report FILE]               the closed loop on the demo shop: 3 faults and a crash,\n"
    "                                     each fixed by asr with no human step, timed\n"
    "\n"
    "Commands find the daemon through its state dir: --state-dir DIR, or the state_dir of\n"
    "-c FILE, or $ASR_STATE_DIR, or ./.asr. Each command takes --help.\n";

static const struct {
    const char *name;
    int (*fn)(int, char **);
} commands[] = {
    {"run", cmd_run},           {"status", cmd_status},
    {"deploy", cmd_deploy},     {"rollback", cmd_rollback},
    {"config", cmd_config},     {"templates", cmd_templates},
    {"detect", cmd_detect},     {"incidents", cmd_incidents},
    {"incident", cmd_incident}, {"kb", cmd_kb},
    {"plan", cmd_plan},         {"audit", cmd_audit},
    {"approve", cmd_approve},   {"reject", cmd_reject},
    {"demo", cmd_demo},

};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "%s", USAGE);
        return ASR_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        printf("%s", USAGE);
        return ASR_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 2, argv + 2);
    cli_error("usage", "unknown command '%s'", argv[1]);
    fprintf(stderr, "%s", USAGE);
    return ASR_EXIT_USAGE;
}
