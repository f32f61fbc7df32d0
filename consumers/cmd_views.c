/* cmd_views.c — placeholder until its owner lands the real command. */
#include "tly_cli.h"
#include "tly_cmd.h"
int tly_cmd_balance(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("balance", "not built yet"); return TLY_EXIT_FAIL; }
int tly_cmd_rebate(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("rebate", "not built yet"); return TLY_EXIT_FAIL; }
int tly_cmd_tier(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("tier", "not built yet"); return TLY_EXIT_FAIL; }
int tly_cmd_claims(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("claims", "not built yet"); return TLY_EXIT_FAIL; }
int tly_cmd_liabilities(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("liabilities", "not built yet"); return TLY_EXIT_FAIL; }
int tly_cmd_exceptions(int argc, char **argv) { (void)argc; (void)argv; tly_errorf("exceptions", "not built yet"); return TLY_EXIT_FAIL; }
