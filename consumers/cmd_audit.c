/* cmd_audit.c — placeholder until its owner lands the real command. */
#include "tly_cli.h"
#include "tly_cmd.h"
int tly_cmd_audit(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("audit", "not built yet"); return TLY_EXIT_FAIL; }
