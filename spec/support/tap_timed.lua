-- busted's TAP output, plus each test's wall time appended to the file
-- $UBLK_SPEC_TIMES names, one "seconds<TAB>test" line each.  CI's time is a
-- budget: spec/harness/guest-run prints the slowest tests beside the slowest files,
-- so a spec that grows shows where.
local tap = require('busted.outputHandlers.TAP')

return function(options)
	local handler = tap(options)
	local path = os.getenv('UBLK_SPEC_TIMES')
	if path and path ~= '' then
		require('busted').subscribe({ 'test', 'end' }, function(element)
			local f = io.open(path, 'a')
			if f then
				f:write(string.format('%.1f\t%s\n', element.duration or 0,
					handler.getFullName(element)))
				f:close()
			end
			return nil, true
		end)
	end
	return handler
end
