#!/usr/bin/env bash
# exp97: upper bounds of the wide kernel's segment costs. One tree, four builds that differ only in
# diagnostic macros (results are wrong on purpose in the three variants; timing only):
#   base  HEAD as is
#   noq   FLASH_MLA_DIAG_NO_Q_RELOAD: the Q tile is loaded for a part's first segment only
#   nost  FLASH_MLA_DIAG_NO_STORES: the epilogue keeps its row-sum exchange but stores nothing
#   both  the two together
# Then an A/B bench, 3 rounds, rotating order. The gain of each variant against base bounds what
# hiding that cost could give. EXP_CASES (space-separated --case values) replaces the case list
# (added for exp103; exp97 ran with the default list).
# Derived from exp96_run.sh (the build and the A/B loop), with four builds of one tree.
# The table: ab_table.py (factored out after this ran; the same output). Since exp105 the builds
# and rounds are ab_run.sh's (the same steps; its macros also reach the C++ flags, where none is read).
set -uo pipefail
export EXP_CASES=${EXP_CASES:-
 b=128,h_q=64,s_k=4096,varlen=1 b=128,h_q=64,s_k=4096,varlen=0 b=128,h_q=64,s_k=16384,varlen=1
 b=128,h_q=128,s_k=4096,varlen=1 b=128,h_q=128,s_k=4096,varlen=0
 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=1 b=128,h_q=128,s_q=2,causal=1,s_k=4096,varlen=0
 b=128,h_q=128,s_q=2,causal=1,s_k=16384,varlen=0
}
SIDES="base:. noq:.:-DFLASH_MLA_DIAG_NO_Q_RELOAD nost:.:-DFLASH_MLA_DIAG_NO_STORES both:.:-DFLASH_MLA_DIAG_NO_Q_RELOAD,-DFLASH_MLA_DIAG_NO_STORES" \
  ROUNDS=3 KERNEL=hopper OUT=${OUT:-/tmp/out97} exec bash "$(dirname "$0")/ab_run.sh"
