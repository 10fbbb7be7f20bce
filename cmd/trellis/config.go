package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/schema"
)

// loadDotEnv reads .env (or $TRELLIS_ENV_FILE) when present; variables
// already set in the environment win.
func loadDotEnv() error {
	path := os.Getenv("TRELLIS_ENV_FILE")
	explicit := path != ""
	if !explicit {
		path = ".env"
	}
	err := godotenv.Load(path)
	if err != nil && !explicit && errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("env file %s: %w", path, err)
	}
	return nil
}

// common are the flags every command that talks to Redis takes.
type common struct {
	redisURL  string
	namespace string
	logLevel  string
	dev       bool
}

func (c *cli) commonFlags(fs *flag.FlagSet) *common {
	o := &common{}
	fs.StringVar(&o.redisURL, "redis-url", "", "Redis URL (default $REDIS_URL, or $REDIS_HOST:$REDIS_PORT with $REDIS_PASSWORD, or redis://127.0.0.1:6379/0)")
	fs.StringVar(&o.namespace, "namespace", "", `key namespace (default $TRELLIS_NAMESPACE or "default")`)
	fs.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error (default $TRELLIS_LOG_LEVEL or info)")
	fs.BoolVar(&o.dev, "dev", false, "development mode: allows clear and destructive monitor actions (default $TRELLIS_DEVELOPMENT)")
	return o
}

func (c *cli) logger(o *common) (*slog.Logger, error) {
	lv := o.logLevel
	flagName := "--log-level"
	if lv == "" {
		lv, flagName = c.getenv("TRELLIS_LOG_LEVEL"), "TRELLIS_LOG_LEVEL"
	}
	level := slog.LevelInfo
	if lv != "" {
		if err := level.UnmarshalText([]byte(lv)); err != nil {
			return nil, usagef("%s: %q is not debug, info, warn or error", flagName, lv)
		}
	}
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: level})), nil
}

func (c *cli) development(o *common) bool {
	if o.dev {
		return true
	}
	v, _ := strconv.ParseBool(c.getenv("TRELLIS_DEVELOPMENT"))
	return v
}

// userinfo finds the credentials of a URL even when the rest does not parse.
var userinfo = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*://([^@/?#]*)@`)

// parseRedisURL is redis.ParseURL with the password kept out of the error:
// Go's URL errors quote the whole URL.
func parseRedisURL(raw string) (*redis.Options, error) {
	opt, err := redis.ParseURL(raw)
	if err == nil {
		return opt, nil
	}
	msg := err.Error()
	if m := userinfo.FindStringSubmatch(raw); m != nil {
		if _, pw, ok := strings.Cut(m[1], ":"); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return nil, errors.New(msg)
}

// redisOptions resolves the Redis connection from the flag, REDIS_URL or
// the REDIS_HOST / REDIS_PORT / REDIS_PASSWORD of the BullMQ system Trellis replaces.
func (c *cli) redisOptions(o *common) (*redis.Options, string, error) {
	if o.redisURL != "" {
		opt, err := parseRedisURL(o.redisURL)
		if err != nil {
			return nil, "", usagef("--redis-url: %v", err)
		}
		return opt, "--redis-url", nil
	}
	if u := c.getenv("REDIS_URL"); u != "" {
		opt, err := parseRedisURL(u)
		if err != nil {
			return nil, "", usagef("REDIS_URL: %v", err)
		}
		return opt, "REDIS_URL", nil
	}
	host, port := c.getenv("REDIS_HOST"), c.getenv("REDIS_PORT")
	if host == "" && port == "" {
		return &redis.Options{Addr: "127.0.0.1:6379"}, "default", nil
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "6379"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, "", usagef("REDIS_PORT: %q is not a port number", port)
	}
	return &redis.Options{Addr: net.JoinHostPort(host, port), Password: c.getenv("REDIS_PASSWORD")}, "REDIS_HOST", nil
}

func (c *cli) namespace(o *common) (string, error) {
	ns, name := o.namespace, "--namespace"
	if ns == "" {
		ns, name = c.getenv("TRELLIS_NAMESPACE"), "TRELLIS_NAMESPACE"
	}
	if ns == "" {
		return "default", nil
	}
	if err := dag.CheckName(ns); err != nil {
		return "", usagef("%s: %q %v", name, ns, err)
	}
	return ns, nil
}

// env is what a command works with: a logger and a client.
type env struct {
	log    *slog.Logger
	rdb    redis.UniversalClient
	client *flow.Client
	dev    bool
}

func (e *env) Close() {
	if e.rdb != nil {
		_ = e.rdb.Close()
	}
}

// connect opens the Redis client of the common flags.
func (c *cli) connect(o *common) (*env, error) {
	log, err := c.logger(o)
	if err != nil {
		return nil, err
	}
	opt, _, err := c.redisOptions(o)
	if err != nil {
		return nil, err
	}
	ns, err := c.namespace(o)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opt)
	e := &env{log: log, rdb: rdb, dev: c.development(o)}
	e.client, err = flow.NewClient(rdb, &flow.Config{Namespace: ns, Development: e.dev, Logger: log})
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return e, nil
}

// databaseURL is --database-url, else DATABASE_URL.
func (c *cli) databaseURL(flagValue string) (string, string) {
	if flagValue != "" {
		return flagValue, "--database-url"
	}
	return c.getenv("DATABASE_URL"), "DATABASE_URL"
}

func (c *cli) openDB(flagValue string) (*bun.DB, error) {
	u, name := c.databaseURL(flagValue)
	if u == "" {
		return nil, usagef("no database: set DATABASE_URL or --database-url (postgres://… or a .db file)")
	}
	db, err := schema.Open(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return db, nil
}

// stringList is a repeatable flag whose values may also be comma-separated.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// batchFlags are --batch TYPE=SIZE[/LINGER] flags: runner.Config.Batching.
type batchFlags map[string]flow.Batching

func (b *batchFlags) String() string {
	parts := make([]string, 0, len(*b))
	for t, v := range *b {
		parts = append(parts, fmt.Sprintf("%s=%d/%s", t, v.Size, v.Linger))
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func (b *batchFlags) Set(v string) error {
	typ, spec, ok := strings.Cut(v, "=")
	if !ok || typ == "" {
		return fmt.Errorf("%q is not TYPE=SIZE or TYPE=SIZE/LINGER", v)
	}
	size, linger, _ := strings.Cut(spec, "/")
	n, err := strconv.Atoi(size)
	if err != nil || n < 1 || n > flow.MaxBatch {
		return fmt.Errorf("%q: the size %q is not a whole number from 1 to %d", v, size, flow.MaxBatch)
	}
	var d time.Duration
	if linger != "" {
		if d, err = time.ParseDuration(linger); err != nil || d < 0 {
			return fmt.Errorf("%q: the linger %q is not a duration of 0 or more (like 5ms)", v, linger)
		}
	}
	if *b == nil {
		*b = batchFlags{}
	}
	(*b)[typ] = flow.Batching{Size: n, Linger: d}
	return nil
}

func positiveDuration(name string, d time.Duration) error {
	if d <= 0 {
		return usagef("--%s %s: must be positive", name, d)
	}
	return nil
}
