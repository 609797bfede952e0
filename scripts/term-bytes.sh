#!/bin/bash
# term-bytes.sh NAME COLS ROWS WARMUP SECONDS CMD...: the bytes a program
# writes to a COLS x ROWS tmux pane over SECONDS, after WARMUP seconds (the
# first frame excluded). Needs tmux. Output lands in /tmp/tb/NAME.bytes.
#
#   scripts/term-bytes.sh demo80 80 24 10 60 env FEEDTOP_DB=/tmp/tb/demo.db target/release/feedtop --demo
name=$1 cols=$2 rows=$3 warm=$4 secs=$5; shift 5
mkdir -p /tmp/tb
sess=tb-$name; out=/tmp/tb/$name.bytes; rm -f $out
tmux kill-session -t $sess 2>/dev/null
tmux new-session -d -s $sess -x $cols -y $rows "$*"
sleep $warm
tmux pipe-pane -t $sess -o "cat >> $out"
sleep $secs
tmux pipe-pane -t $sess
tmux send-keys -t $sess q
sleep 2; tmux kill-session -t $sess 2>/dev/null
b=$(stat -c %s $out); echo "$name ${cols}x${rows}: $b bytes in ${secs}s = $((b / secs)) B/s"
