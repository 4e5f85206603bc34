package main

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

func init() {
	register(completionCommand)
}

// The bash and zsh scripts ask xrun itself for candidates (urfave/cli's
// --generate-bash-completion protocol), so they follow the commands and flags
// of the binary installed, with no list to keep in sync.
const bashCompletion = `# bash completion for xrun; load with: source <(xrun completion bash)
_xrun_complete() {
  local cur=${COMP_WORDS[COMP_CWORD]}
  local req=("${COMP_WORDS[@]:0:COMP_CWORD}")
  # A lone "-" asks for flags; a partial flag would not parse.
  [[ $cur == -* ]] && req+=(-)
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$("${req[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _xrun_complete xrun
`

const zshCompletion = `#compdef xrun
# zsh completion for xrun; load with: source <(xrun completion zsh)
_xrun() {
  local -a opts
  local cur=${words[-1]}
  if [[ $cur == -* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} - --generate-bash-completion 2>/dev/null)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion 2>/dev/null)}")
  fi
  if [[ -n ${opts[1]} ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _xrun xrun
`

var completionCommand = &cli.Command{
	Name:      "completion",
	Usage:     "print a shell completion script",
	ArgsUsage: "bash|zsh|fish",
	Description: `Examples:
   source <(xrun completion bash)                 # in ~/.bashrc
   xrun completion zsh > "${fpath[1]}/_xrun"
   xrun completion fish > ~/.config/fish/completions/xrun.fish`,
	Action: func(c *cli.Context) error {
		var script string
		switch c.Args().First() {
		case "bash":
			script = bashCompletion
		case "zsh":
			script = zshCompletion
		case "fish":
			s, err := c.App.ToFishCompletion()
			if err != nil {
				return fmt.Errorf("generate fish completion: %w", err)
			}
			script = s
		default:
			return fmt.Errorf("completion: unknown shell %q: use bash, zsh or fish", c.Args().First())
		}
		_, err := fmt.Fprint(c.App.Writer, script)
		return err
	},
}
