package dag

import (
	"embed"
	"fmt"

	"github.com/redis/go-redis/v9"
)

//go:embed scripts/*.lua
var scriptFS embed.FS

// scripts are the store's Lua programs, each with lib.lua prepended.
type scripts struct {
	enqueue, complete, heartbeat, cancel, retry, expand, remove *redis.Script
}

func loadScripts() (*scripts, error) {
	lib, err := scriptFS.ReadFile("scripts/lib.lua")
	if err != nil {
		return nil, err
	}
	load := func(name string) (*redis.Script, error) {
		body, err := scriptFS.ReadFile("scripts/" + name + ".lua")
		if err != nil {
			return nil, fmt.Errorf("dag: script %s: %w", name, err)
		}
		return redis.NewScript(string(lib) + "\n" + string(body)), nil
	}
	var s scripts
	for name, dst := range map[string]**redis.Script{
		"enqueue": &s.enqueue, "complete": &s.complete, "heartbeat": &s.heartbeat,
		"cancel": &s.cancel, "retry": &s.retry, "expand": &s.expand, "remove": &s.remove,
	} {
		if *dst, err = load(name); err != nil {
			return nil, err
		}
	}
	return &s, nil
}
