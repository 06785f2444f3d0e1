package main

import (
	"fmt"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Flag annotations: the other spellings of a flag (aliasFlag).
const (
	annotAliases    = "iosmux-aliases"
	annotDeprecated = "iosmux-deprecated-aliases"
)

// usageTemplate is cobra's, with our flag table (flagTable) and wording.
const usageTemplate = `Usage:
  {{.UseLine}}{{if .HasAvailableSubCommands}}
  {{.CommandPath}} COMMAND [flags]{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableSubCommands}}

Commands:{{range .Commands}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{flagTable .LocalFlags}}{{end}}{{if .HasAvailableInheritedFlags}}

Global flags:
{{flagTable .InheritedFlags}}{{end}}{{if .HasAvailableSubCommands}}

Run '{{.CommandPath}} COMMAND --help' for a command's flags.{{end}}
`

var addTemplateFuncs sync.Once

func setUsageTemplate(root *cobra.Command) {
	addTemplateFuncs.Do(func() { cobra.AddTemplateFunc("flagTable", flagTable) })
	root.SetUsageTemplate(usageTemplate)
}

// flagTable lists the visible flags of fs: spelling, value name, usage, the
// default when it is not the zero value, other spellings.
func flagTable(fs *pflag.FlagSet) string {
	type row struct{ left, right string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		varname, usage := pflag.UnquoteUsage(f)
		switch {
		case f.Value.Type() == "bool":
		case f.NoOptDefVal != "":
			left += "[=" + varname + "]"
		case varname != "":
			left += " " + varname
		}
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "[]" && d != "0s" && f.Value.Type() != "bool" {
			usage += " (default " + d + ")"
		} else if f.Value.Type() == "bool" && d == "true" {
			usage += " (default on)"
		}
		if al := f.Annotations[annotAliases]; len(al) > 0 {
			usage += " (also --" + strings.Join(al, ", --") + ")"
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	var b strings.Builder
	for i, r := range rows {
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "%-*s   %s", width, r.left, r.right)
	}
	return b.String()
}
