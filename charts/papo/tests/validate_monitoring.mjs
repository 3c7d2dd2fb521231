// Validates ServiceMonitor and PrometheusRule objects (a JSON array on stdin) against the prometheus-operator
// schemas of @kubernetes-models/prometheus-operator, installed under the folder given as the first argument.
// Prints one line per invalid object and exits 1 if there is any.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
let invalid = 0;
for (const object of objects) {
  const file = join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1", `${object.kind}.js`);
  const { [object.kind]: Model } = await import(pathToFileURL(file).href);
  try {
    new Model(object).validate();
  } catch (error) {
    invalid += 1;
    console.log(`${object.kind}/${object.metadata.name}: ${error.message}`);
  }
}
process.exit(invalid ? 1 : 0);
