/* cmd_status.c — placeholder until its owner lands the real command. */
#include "tly_cli.h"
#include "tly_cmd.h"
int tly_cmd_status(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("status", "not built yet"); return TLY_EXIT_FAIL; }
int tly_cmd_wait(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("wait", "not built yet"); return TLY_EXIT_FAIL; }
