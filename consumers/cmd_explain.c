/* cmd_explain.c — placeholder until its owner lands the real command. */
#include "tly_cli.h"
#include "tly_cmd.h"
int tly_cmd_explain(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("explain", "not built yet"); return TLY_EXIT_FAIL; }
