package monitor_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/redis/go-redis/v9"

	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

// Mount the monitor under a prefix of your own service's mux. With a token
// configured, every request but the probes must carry it.
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	client, err := flow.NewClient(rdb, &flow.Config{Namespace: "example"})
	if err != nil {
		panic(err)
	}
	reg := flow.NewRegistry()
	flow.RegisterType[Echo](reg)
	h, err := monitor.New(client, monitor.Config{
		Token:    "s3cret",
		Registry: reg,
		BasePath: "/trellis",
		Logger:   slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/trellis/", http.StripPrefix("/trellis", h))

	for _, path := range []string{"/trellis/livez", "/trellis/api/queue-stats"} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		body, _ := io.ReadAll(w.Body)
		fmt.Print(w.Code, " ", string(body))
	}
	// Output:
	// 200 {"status":"ok"}
	// 401 {"error":"authentication required"}
}
