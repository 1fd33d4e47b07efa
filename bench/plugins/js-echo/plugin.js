// Echo plugin for the benchmark's application-echo scenario: text `<x>` is answered `echo:<x>`.
import * as host from "wasmgate:plugin/host@0.2.0";

export function onMessage(client, msg) {
  if (msg.tag === "text") {
    host.sendToClient(client, { tag: "text", val: "echo:" + msg.val });
  }
}
