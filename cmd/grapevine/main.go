// Command grapevine is an SKS-compatible OpenPGP keyserver built on an
// append-only event log. See docs/architecture.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"runtime/trace"
	"syscall"

	"github.com/grapevine-keyserver/grapevine/eventlog"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// GRAPEVINE_CPUPROFILE=FILE writes a CPU profile of the whole command,
	// for the optimisation work recorded in docs/benchmarks.md.
	if path := os.Getenv("GRAPEVINE_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer f.Close()
		}
	}
	// GRAPEVINE_TRACE=FILE writes an execution trace of the whole command
	// (go tool trace), to see where goroutines wait and cores idle.
	if path := os.Getenv("GRAPEVINE_TRACE"); path != "" {
		if f, err := os.Create(path); err == nil {
			trace.Start(f)
			defer f.Close()
		}
	}
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	trace.Stop()
	pprof.StopCPUProfile()
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(os.Stderr, "grapevine: %v\n", err)
		}
		os.Exit(exitCode(err))
	}
}

// usageError marks bad command-line arguments (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func exitCode(err error) int {
	// Commands run by other programs (mail-in from an MTA) carry their own
	// status, e.g. 75 EX_TEMPFAIL so that the MTA retries.
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	var u usageError
	if errors.As(err, &u) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

const usage = `usage: grapevine <command> [flags]

commands:
  serve    run the keyserver: HKP on 11371, recon on 11370 (sksconf)
  recon    reconcile with one peer now
  import   load dump files (binary or armored keys) into the log and indexes
  replay   rebuild every projection from the log
  dump     write SKS-format dump files of the keys as of a log index or time
  stats    print counts and log positions as "name: value" lines
  mail-in  store the keys of one PKS mail read from stdin (MTA pipe; sks_add_mail)
  delete   remove a key everywhere and keep it out (recon, uploads): FPR --reason TEXT
  block    refuse a fingerprint from now on; unblock: accept it again
  check    verify the log's checksums, the projections against a replay, the prefix tree
  version  print the version

Run "grapevine <command> -h" for a command's flags.
`

// run is main without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usagef("no command given")
	}
	cmd, rest := args[0], args[1:]
	env := &env{stdout: stdout, stderr: stderr}
	switch cmd {
	case "import":
		return env.importCmd(ctx, rest)
	case "replay":
		return env.replayCmd(ctx, rest)
	case "dump":
		return env.dumpCmd(ctx, rest)
	case "stats":
		return env.statsCmd(ctx, rest)
	case "check":
		return env.checkCmd(ctx, rest)
	case "serve":
		return env.serveCmd(ctx, rest)
	case "recon":
		return env.reconCmd(ctx, rest)
	case "delete":
		return env.adminEventCmd(ctx, "delete", eventlog.KindKeyDeleted, rest)
	case "block":
		return env.adminEventCmd(ctx, "block", eventlog.KindKeyBlocked, rest)
	case "unblock":
		return env.adminEventCmd(ctx, "unblock", eventlog.KindKeyUnblocked, rest)
	case "mail-in":
		return env.mailInCmd(ctx, rest)
	case "version", "-version", "--version":
		fmt.Fprintf(stdout, "grapevine %s\n", version)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return usagef("unknown command %q", cmd)
	}
}

// env carries a command's output streams.
type env struct {
	stdout, stderr io.Writer
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func (e *env) newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("grapevine "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: grapevine %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning flag errors into usage errors. Flags may
// follow positional arguments (grapevine import dump/ --basedir x).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{fmt.Sprintf("%s: %v", fs.Name(), err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}
