# bash completion for tally(1). Installed as
# share/bash-completion/completions/tally (bash-completion loads it the first
# time `tally` is completed); or source it: `. tally.bash`.
#
# It asks the binary being completed, so it never drifts from it: commands
# (and the subcommands of audit, bench and ledger) from the "Commands:"
# section of `tally --help` (`tally audit --help`, ...) or the usage lines
# of `tally ledger --help`, flags from the --help of the command at hand.
# A flag's value is a directory after DIR, else a file name.

# Prints the names listed under "Commands:" in the help of "$@", and the
# subcommand of each indented usage line `tally CMD SUB ...` (tally ledger
# has no "Commands:" section, only its promote line).
_tally_commands()
{
    "$@" --help 2>/dev/null | sed -n -e '/^Commands:/,/^$/s/^  \([a-z][a-z-]*\)  .*/\1/p' \
        -e 's/^ \{1,\}tally [a-z]\{1,\} \([a-z][a-z-]*\) .*/\1/p'
}

# Prints every long flag the help of "$@" names.
_tally_flags()
{
    { echo --help; "$@" --help 2>/dev/null | grep -o -- '--[a-z][a-z0-9-]*'; } | sort -u
}

# Prints the word that follows flag $1 in the help of "${@:2}" (DIR, FILE,
# N, ...), nothing for a flag without a value.
_tally_value()
{
    local flag=$1
    shift
    "$@" --help 2>/dev/null | grep -o -m 1 -- "$flag [A-Z][A-Z-]*" | sed 's/^[^ ]* //'
}

_tally()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
    local bin=${COMP_WORDS[0]} i word
    [[ $bin == "~/"* ]] && bin=$HOME/${bin#"~/"}
    COMPREPLY=()
    # The command line so far: tally, the command, and its subcommand when
    # the command has some (audit, bench).
    local -a cmd=("$bin")
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        [[ $word == -* ]] && break
        if ((${#cmd[@]} == 1)) || { ((${#cmd[@]} == 2)) && _tally_has_sub "${cmd[1]}"; }; then
            cmd+=("$word")
        else
            break
        fi
    done
    if ((COMP_CWORD == ${#cmd[@]})) && [[ $cur != -* ]] &&
        { ((${#cmd[@]} == 1)) || { ((${#cmd[@]} == 2)) && _tally_has_sub "${cmd[1]}"; }; }; then
        mapfile -t COMPREPLY < <(compgen -W "$(_tally_commands "${cmd[@]}")" -- "$cur")
        return 0
    fi
    if [[ $cur == -* ]]; then
        if ((${#cmd[@]} == 1)); then
            mapfile -t COMPREPLY < <(compgen -W "--help --version" -- "$cur")
        else
            mapfile -t COMPREPLY < <(compgen -W "$(_tally_flags "${cmd[@]}")" -- "$cur")
        fi
        return 0
    fi
    compopt -o filenames 2>/dev/null
    if [[ $prev == --* && $(_tally_value "$prev" "${cmd[@]}") == DIR ]]; then
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    fi
    return 0
}

# True for the commands that take a subcommand.
_tally_has_sub()
{
    [[ $1 == audit || $1 == bench || $1 == ledger ]]
}

complete -F _tally tally
