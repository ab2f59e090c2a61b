// Validates custom resources offline against their projects' own API schemas, as
// kubernetes-validate does for Kubernetes' objects: KEDA's (npm @kubernetes-models/keda,
// generated from KEDA's v1alpha1 API types, which its CRDs are generated from).
//
// Reads a JSON array of objects on stdin; prints one line per invalid object, with what is
// wrong, and exits 1 if any is; 2 for an object of a kind it has no schema for.
// COLA_K8S_NODE_MODULES names the node_modules folder the models are installed in.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.COLA_K8S_NODE_MODULES;
if (!modules) {
  console.error('COLA_K8S_NODE_MODULES is not set');
  process.exit(2);
}
const models = {
  'keda.sh/v1alpha1': '@kubernetes-models/keda/keda.sh/v1alpha1',
};

const objects = JSON.parse(readFileSync(0, 'utf8'));
let invalid = 0;
for (const object of objects) {
  const folder = models[object.apiVersion];
  const name = `${object.kind}/${object.metadata?.namespace ?? '-'}/${object.metadata?.name}`;
  if (!folder) {
    console.error(`${name}: no schema for ${object.apiVersion}`);
    process.exit(2);
  }
  const module = await import(pathToFileURL(join(modules, folder, `${object.kind}.js`)).href);
  const Model = module[object.kind];
  try {
    new Model(object).validate();
  } catch (error) {
    invalid += 1;
    console.log(`${name}: ${error.message}`);
  }
}
process.exit(invalid ? 1 : 0);
