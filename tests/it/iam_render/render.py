"""Renders the iam module's policy document (terraform/modules/iam/main.tf)
as the JSON AWS evaluates, offline: the aws provider that would render
aws_iam_policy_document cannot be had here.

python-hcl2 reads the document's statement and condition blocks, static and
dynamic; every expression in them (and the module's locals it uses) is
evaluated by Terraform itself from variables.tf and the locals block with
the given inputs; only the block iterators (statement.value, condition.key)
are substituted here.

Usage: render.py MODULE_DIR INPUTS_JSON TERRAFORM WORKDIR  (prints the JSON)
"""
import json, os, re, subprocess, sys, hcl2

module_dir, inputs_json, terraform, workdir = sys.argv[1:5]
EXPR = re.compile(r"\$\{([^}]*)\}")
ITERATORS = ("statement.", "condition.")

def unquote(v):
    if isinstance(v, str) and len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        return v[1:-1]
    return v

with open(os.path.join(module_dir, "main.tf")) as f:
    text = f.read()
module = hcl2.loads(text)
documents = [body for data in module.get("data", []) for kind, named in data.items()
             if unquote(kind) == "aws_iam_policy_document" for body in named.values()]
assert len(documents) == 1, documents
document = documents[0]

# Every expression that needs no block iterator, evaluated by Terraform.
names = {}
def collect(v):
    if isinstance(v, str):
        for e in EXPR.findall(unquote(v)):
            if not e.startswith(ITERATORS):
                names.setdefault(e, "e%d" % len(names))
    elif isinstance(v, list):
        for x in v: collect(x)
    elif isinstance(v, dict):
        for x in v.values(): collect(x)
collect(document)

start = text.index("\nlocals {")
depth, end = 0, None
for i in range(start + 1, len(text)):
    if text[i] == "{": depth += 1
    elif text[i] == "}":
        depth -= 1
        if depth == 0:
            end = i + 1
            break
os.makedirs(workdir, exist_ok=True)
with open(os.path.join(module_dir, "variables.tf")) as f:
    variables = f.read()
with open(os.path.join(workdir, "main.tf"), "w") as f:
    f.write(variables + "\n" + text[start:end] + "\n")
    for expr, name in names.items():
        f.write('output "%s" {\n  value = %s\n}\n' % (name, expr))
with open(os.path.join(workdir, "inputs.tfvars.json"), "w") as f:
    f.write(inputs_json)
def tf(*args):
    return subprocess.run([terraform, *args], cwd=workdir, check=True, capture_output=True, text=True).stdout
tf("init", "-input=false", "-no-color")
tf("apply", "-auto-approve", "-input=false", "-no-color", "-var-file=inputs.tfvars.json")
outputs = json.loads(tf("output", "-json"))
values = {expr: outputs[name]["value"] for expr, name in names.items()}

def evaluate(v, env):
    s = unquote(v)
    look = lambda e: env[e] if e in env else values[e]
    whole = EXPR.fullmatch(s)
    if whole:
        return look(whole.group(1))
    return EXPR.sub(lambda m: str(look(m.group(1))), s)

def listed(v, env):
    out = []
    for x in (v if isinstance(v, list) else [v]):
        x = evaluate(x, env)
        out.extend(x if isinstance(x, list) else [x])
    return out

def instances(body, label, env):
    """The blocks `label` of body, static then dynamic, each with its env."""
    found = [(b, env) for b in body.get(label, [])]
    for dynamic in body.get("dynamic", []):
        for name, block in dynamic.items():
            if unquote(name) != label:
                continue
            each = evaluate(block["for_each"], env)
            pairs = each.items() if isinstance(each, dict) else enumerate(each)
            for key, value in pairs:
                inner = dict(env)
                inner[label + ".key"] = key
                inner[label + ".value"] = value
                for content in block["content"]:
                    found.append((content, inner))
    return found

statements = []
for s, env in instances(document, "statement", {}):
    statement = {
        "Sid": evaluate(s["sid"], env),
        "Effect": evaluate(s["effect"], env),
        "Action": listed(s["actions"], env),
        "Resource": listed(s["resources"], env),
    }
    conditions = {}
    for c, cenv in instances(s, "condition", env):
        test = evaluate(c["test"], cenv)
        conditions.setdefault(test, {})[evaluate(c["variable"], cenv)] = listed(c["values"], cenv)
    if conditions:
        statement["Condition"] = conditions
    statements.append(statement)
print(json.dumps({"Version": "2012-10-17", "Statement": statements}))
