/* cmd_ledger.c — placeholder until its owner lands the real command. */
#include "tly_cli.h"
#include "tly_cmd.h"
int tly_cmd_ledger(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("ledger", "not built yet"); return TLY_EXIT_FAIL; }
