package monitor_test

import (
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/trellisflow/trellis/dag"
	"github.com/trellisflow/trellis/flow"
	"github.com/trellisflow/trellis/monitor"
)

// On the failed page, two of three failed jobs are selected and retried
// in one bulk request; select-all selects every shown job, and again none.
func TestBulkRetryInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{})
	e.run()
	for _, id := range []string{"b1", "b2", "b3"} {
		e.add(id, "fail "+id)
	}
	for _, id := range []string{"b1", "b2", "b3"} {
		e.wait(id, dag.Failed)
	}
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close) // after the browser closes, which holds an event stream open
	b := newBrowser(t)
	do, poll, eval := b.do, b.poll, b.eval
	count := `document.querySelector('#failed-bulk .muted').textContent`

	do(chromedp.Navigate(srv.URL+"/failed"), poll(`document.querySelectorAll('#failed-jobs input.select').length === 3`))
	require.Equal(t, "select jobs to act on them", eval(count))
	require.Equal(t, "Retry", eval(`[...document.querySelectorAll('#failed-bulk button')].map(b => b.textContent).join(' ')`), "no remove outside development mode")
	require.Equal(t, "true", eval(`String(document.querySelector('#failed-bulk button').disabled)`))
	do(chromedp.Click(chromedp.CSS(`#failed-jobs input.select-all`)), poll(count+` === '3 selected'`),
		chromedp.Click(chromedp.CSS(`#failed-jobs input.select-all`)), poll(count+` === 'select jobs to act on them'`))

	do(chromedp.Click(chromedp.CSS(`#failed-jobs input[data-id="b1"]`)), chromedp.Click(chromedp.CSS(`#failed-jobs input[data-id="b3"]`)),
		poll(count+` === '2 selected'`), chromedp.Click(chromedp.CSS(`#failed-bulk button[data-action=retry]`)),
		poll(`document.getElementById('flash').textContent === 'Retry: 2 of 2 jobs'`))
	e.wait("b1", dag.Failed) // each ran again and failed again
	e.wait("b3", dag.Failed)
	for id, want := range map[string]int{"b1": 2, "b2": 1, "b3": 2} {
		require.Equal(t, want, e.failures(id), id)
	}
	do(poll(`document.querySelectorAll('#failed-jobs input.select').length === 3 && !document.querySelector('#failed-jobs input.select:checked')`))
}

// On the jobs list, in development mode: Cancel cancels the selected
// unfinished jobs, and Remove deletes the selected finished jobs' flows;
// a job an action cannot take is named in the message.
func TestBulkCancelAndRemoveInBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, monitor.Config{Development: true})
	for _, id := range []string{"w1", "w2", "w3"} {
		_, err := e.client.Add(t.Context(), Echo{Text: id}, &flow.NodeOpts{ID: id, Queue: "nobody"})
		require.NoError(t, err)
	}
	srv := httptest.NewServer(e.h)
	t.Cleanup(srv.Close)
	b := newBrowser(t)
	do, poll, eval := b.do, b.poll, b.eval
	row := func(id string) string { return `#jobs input[data-id="` + id + `"]` }
	do(chromedp.Navigate(srv.URL+"/jobs"), poll(`document.querySelectorAll('#jobs input.select').length === 3`))
	require.Equal(t, "Retry Cancel Remove flows", eval(`[...document.querySelectorAll('#jobs-bulk button')].map(b => b.textContent).join(' ')`))

	do(chromedp.Click(chromedp.CSS(row("w1"))), chromedp.Click(chromedp.CSS(row("w2"))),
		chromedp.Click(chromedp.CSS(`#jobs-bulk button[data-action=cancel]`)),
		poll(`document.getElementById('flash').textContent === 'Cancel: 2 of 2 jobs'`))
	e.wait("w1", dag.Cancelled)
	e.wait("w2", dag.Cancelled)
	j, err := e.client.Job(t.Context(), "w3")
	require.NoError(t, err)
	require.Equal(t, dag.Ready, j.State, "not selected, not cancelled")

	// w3 is unfinished: remove takes w1 and names w3
	do(poll(`document.querySelectorAll('#jobs input.select').length === 3 && !document.querySelector('#jobs input.select:checked')`),
		chromedp.Click(chromedp.CSS(`#jobs input.select-all`)),
		poll(`document.querySelector('#jobs-bulk .muted').textContent === '3 selected'`),
		chromedp.Click(chromedp.CSS(`#jobs-bulk button[data-action=remove]`)),
		poll(`document.getElementById('flash').textContent.startsWith('Remove flows: 2 of 3 jobs; w3: ')`))
	for _, id := range []string{"w1", "w2"} {
		_, err := e.client.Job(t.Context(), id)
		require.ErrorIs(t, err, flow.ErrNotFound, id)
	}
	_, err = e.client.Job(t.Context(), "w3")
	require.NoError(t, err)
}
