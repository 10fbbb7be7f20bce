// Command trellis runs Trellis workers and the monitor, and operates on jobs
// from the shell.
//
//	trellis worker     run steps for every message type
//	trellis monitor    serve the dashboard and HTTP API (default :3001)
//	trellis dev        worker and monitor in one process, on an in-process Redis and SQLite
//	trellis enqueue    enqueue a JSON message from a file or stdin
//	trellis save-plan  enqueue a full plan save from a CSV file
//	trellis stats      counts, rates and durations
//	trellis health     healthy / warning / critical, with reasons
//	trellis inspect    one job: payload, timeline, error
//	trellis graph      draw a flow as DOT, Mermaid, SVG or PNG
//	trellis retry      retry failed or cancelled jobs
//	trellis cancel     cancel jobs or flows
//	trellis clear      delete the namespace (development only)
//	trellis migrate    bring the database schema up to date
//	trellis redeliver  send the stored emails and notifications that were not delivered
//
// Configuration comes from flags, then the environment (REDIS_URL, or the
// REDIS_HOST / REDIS_PORT / REDIS_PASSWORD of the BullMQ system Trellis replaces; DATABASE_URL;
// TRELLIS_NAMESPACE, …), then a .env file in the working directory when
// there is one. Every command takes --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	summary string
	usage   string // after "trellis NAME"
	detail  string
	run     func(ctx context.Context, c *cli, args []string) error
}

var commands map[string]*command

func init() {
	commands = map[string]*command{
		"worker":    cmdWorker,
		"monitor":   cmdMonitor,
		"dev":       cmdDev,
		"enqueue":   cmdEnqueue,
		"save-plan": cmdSavePlan,
		"stats":     cmdStats,
		"health":    cmdHealth,
		"inspect":   cmdInspect,
		"graph":     cmdGraph,
		"retry":     cmdRetry,
		"cancel":    cmdCancel,
		"clear":     cmdClear,
		"migrate":   cmdMigrate,
		"reindex":   cmdReindex,
		"redeliver": cmdRedeliver,
		"pause":     cmdPause,
		"resume":    cmdResume,
		"limit":     cmdLimit,
	}
}

// cli is one invocation: its streams and environment.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{stdin: stdin, stdout: stdout, stderr: stderr}
	if err := loadDotEnv(); err != nil {
		fmt.Fprintf(stderr, "trellis: %v\n", err)
		return 1
	}
	c.getenv = os.Getenv
	if len(args) == 0 {
		c.help(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 {
			if cmd, ok := commands[args[1]]; ok {
				_ = cmd.run(ctx, c, []string{"--help"})
				return 0
			}
			fmt.Fprintf(stderr, "trellis: unknown command %q\n", args[1])
			return 2
		}
		c.help(stdout)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "trellis: unknown command %q (run `trellis help` for the list)\n", name)
		return 2
	}
	err := cmd.run(ctx, c, args[1:])
	var ue *usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "trellis %s: %v\n", name, err)
		return 2
	case errors.Is(err, errQuiet):
		return 1
	default:
		fmt.Fprintf(stderr, "trellis %s: %v\n", name, err)
		if code, ok := err.(interface{ ExitCode() int }); ok {
			return code.ExitCode()
		}
		return 1
	}
}

// errQuiet fails a command that already said why.
var errQuiet = errors.New("failed")

func (c *cli) help(w io.Writer) {
	fmt.Fprintln(w, "trellis — jobs with dependencies, on Redis")
	fmt.Fprintln(w, "\nusage: trellis COMMAND [flags] [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `trellis COMMAND --help` for a command's flags.")
	fmt.Fprintln(w, "\nenvironment (flags win; a .env file in the working directory fills what is unset):")
	for _, e := range envHelp {
		fmt.Fprintf(w, "  %-22s %s\n", e[0], e[1])
	}
}

var envHelp = [][2]string{
	{"REDIS_URL", "redis://[user:password@]host:port/db (rediss:// for TLS); default redis://127.0.0.1:6379/0"},
	{"REDIS_HOST", "used when REDIS_URL is unset, with REDIS_PORT (6379) and REDIS_PASSWORD"},
	{"DATABASE_URL", "postgres://… or sqlite path for the steps' database"},
	{"TRELLIS_NAMESPACE", "the key namespace; default \"default\""},
	{"TRELLIS_TOKEN", "the monitor's bearer token"},
	{"TRELLIS_USER", "the monitor's basic-auth user (with TRELLIS_PASSWORD)"},
	{"TRELLIS_DEVELOPMENT", "1 allows clear and the monitor's destructive actions"},
	{"TRELLIS_LOG_LEVEL", "debug, info, warn or error; default info"},
	{"SMTP_ADDR", "the SMTP server of EMAIL jobs, host:port (or SMTP_HOST with SMTP_PORT, default 587)"},
	{"SMTP_FROM", "the sender of EMAIL jobs"},
	{"SMTP_USER", "the SMTP AUTH user, with SMTP_PASSWORD"},
	{"SMTP_TLS", "none, starttls or tls; default by port (465 tls, 587 starttls, else none)"},
	{"SMTP_CA_FILE", "PEM CAs trusted for the SMTP server, beside the system's"},
	{"TRELLIS_NOTIFY_URL", "the webhook NOTIFICATION jobs are POSTed to, with TRELLIS_NOTIFY_SECRET"},
}

// flags returns a FlagSet for cmd whose --help prints the command's usage.
func (c *cli) flags(name string) *flag.FlagSet {
	cmd := commands[name]
	fs := flag.NewFlagSet("trellis "+name, flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "usage: trellis %s %s\n\n%s\n", name, cmd.usage, cmd.summary)
		if cmd.detail != "" {
			fmt.Fprintf(out, "\n%s\n", strings.TrimSpace(cmd.detail))
		}
		fmt.Fprintln(out, "\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args, flags and positional arguments in any order, and
// returns the positional ones. --help prints usage to stdout and returns
// flag.ErrHelp.
func (c *cli) parse(fs *flag.FlagSet, args []string) ([]string, error) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(c.stdout)
			fs.Usage()
			return nil, flag.ErrHelp
		}
	}
	fs.SetOutput(io.Discard) // errors are reported once, by run
	var pos []string
	for {
		n := len(args)
		if err := fs.Parse(args); err != nil {
			return nil, &usageError{err.Error() + " (see --help)"}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(rest) < n && args[n-len(rest)-1] == "--" {
			return append(pos, rest...), nil // everything after -- is positional
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
