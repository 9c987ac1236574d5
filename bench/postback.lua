-- wrk script: accepted postbacks, each with a fresh txid, spread over the click ids
-- passed as arguments. Usage: wrk ... -s bench/postback.lua <url> -- <prefix> <cid> [cid...]
local prefix, cids, n, id = "", {}, 0, 0
local threads = {}

function setup(thread)
  id = id + 1
  thread:set("tid", id)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1]
  for i = 2, #args do cids[#cids + 1] = args[i] end
end

function request()
  n = n + 1
  local cid = cids[(n % #cids) + 1]
  return wrk.format("GET", "/postback/cake?cid=" .. cid .. "&payout=1.5&txid=" .. prefix .. "-" .. tid .. "-" .. n)
end
