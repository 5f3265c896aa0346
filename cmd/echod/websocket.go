package main

import (
	"context"
	"io"

	"github.com/echod/echod/internal/target"
)

// This file is where WebSocket support plugs into the tools: send and
// check route every ws:// and wss:// address here, and nowhere else. The
// web helper replaces these two functions (target.Path holds the URL's
// path and query).

// checkWebSocket runs the WebSocket checks against a ws:// or wss:// target.
func checkWebSocket(ctx context.Context, t target.Target, std stdio) error {
	return usagef("check", "%s: checking WebSocket echo is not supported yet", t)
}

// sendWebSocket sends a message or standard input to a ws:// or wss://
// target and prints the echo.
func sendWebSocket(ctx context.Context, t target.Target, src io.Reader, o sendOptions, std stdio) error {
	return usagef("send", "%s: sending over WebSocket is not supported yet", t)
}
